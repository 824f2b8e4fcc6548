// Contract: the module Web Worker's entry: exposes one WorkerTrainer over comlink. All heavy work (import,
// tokenization, planning, training, export) runs here, never on the page's thread.

import { expose } from 'comlink';
import { WorkerTrainer } from './trainer.ts';

expose(new WorkerTrainer());
