// Contract: the module Web Worker's entry: exposes one WorkerTrainer over comlink. All heavy work (import, tokenization,
// planning, training, export) runs here, never on the page's thread.

import { expose } from 'comlink';
import { WorkerTrainer } from './trainer.ts';

const trainer = new WorkerTrainer();
// Test aid for the end-to-end tests (they evaluate in the worker): lose the GPU device mid-run.
(globalThis as { usafTest?: object }).usafTest = { loseDevice: () => trainer.loseDeviceForTest() };
expose(trainer);
