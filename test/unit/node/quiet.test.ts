// The CLI's stderr filter: Dawn's adapter-refusal blocks go, every other line stays, whatever the chunking.
import { describe, expect, it } from 'vitest';
import { dropAdapterWarnings } from '../../../src/node/quiet.ts';

const NOISE = [
  'Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.',
  ' - While initializing adapter (backend=BackendType::Vulkan)',
  '    at InitializeImpl (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/vulkan/PhysicalDeviceVk.cpp:257)',
  '',
].join('\n') + '\n';
const REAL = [
  'step 1/4 loss 4.93',
  'Warning: a real warning that is not about an adapter',
  '    at someFrame (x.ts:1)',
  '',
  'usaf: Error: no WebGPU adapter',
].join('\n') + '\n';

function run(text: string, cut: number): string {
  const f = dropAdapterWarnings();
  let out = '';
  for (let i = 0; i < text.length; i += cut) out += f.push(text.slice(i, i + cut));
  return out + f.end();
}

describe('dropAdapterWarnings', () => {
  for (const cut of [1, 7, 64, 10_000]) {
    it(`drops the adapter blocks only (chunks of ${cut})`, () => {
      expect(run(NOISE + REAL + NOISE + NOISE + REAL, cut)).toBe(REAL + REAL);
      expect(run(REAL, cut)).toBe(REAL);
      expect(run('Warning: last line, no newline', cut)).toBe('Warning: last line, no newline');
    });
  }
});
