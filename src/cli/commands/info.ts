// usaf info: the WebGPU adapter, its features and limits, as JSON.
import { command } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';

export const info = command('info', 'print the WebGPU adapter, features and limits (JSON)', {}, async () => {
  const gpu = await nodeGpu();
  console.log(JSON.stringify(gpu.info, null, 2));
  return 0;
});
