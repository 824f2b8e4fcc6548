// Contract: the module Web Worker's entry: exposes one WorkerTrainer over comlink. All heavy work (import, tokenization,
// planning, training, export) runs here, never on the page's thread.

import { expose } from 'comlink';
import { WorkerTrainer } from './trainer.ts';
import { generateInWorker } from './generate.ts';

const trainer = new WorkerTrainer();
// Test aids for the end-to-end tests (they evaluate in the worker): lose the GPU device mid-run; the engine's own
// generation for given prompt ids (the reference the Try screen's tokens are checked against).
(globalThis as { usafTest?: object }).usafTest = {
  loseDevice: () => trainer.loseDeviceForTest(),
  generate: (req: Parameters<typeof generateInWorker>[0]) => generateInWorker(req, () => undefined),
};
expose(trainer);
