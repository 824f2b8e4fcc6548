// Contract: the module Web Worker's entry: binds the training engine and exposes one WorkerTrainer over comlink. All
// heavy work (import, tokenization, planning, training, export) runs here, never on the page's thread.

import { expose } from 'comlink';
import { bindEngine } from './engine-binding.ts';
import { workerEngine } from './engine.ts';
import { WorkerTrainer } from './trainer.ts';

bindEngine(workerEngine);
const trainer = new WorkerTrainer();
// Test aid for the end-to-end tests (they evaluate in the worker): lose the GPU device mid-run.
(globalThis as { usafTest?: object }).usafTest = { loseDevice: () => trainer.loseDeviceForTest() };
expose(trainer);
