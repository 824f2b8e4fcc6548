// Contract: the page's side of the worker: starts it and returns the comlink proxy of `Trainer`, plus `callbacks`
// and `progress` to pass functions across (comlink must proxy them; a plain function cannot be cloned).

import { proxy, wrap, type Remote } from 'comlink';
import type { RunCallbacks, Trainer } from './protocol.ts';

export type TrainerProxy = Remote<Trainer>;

/** Starts the engine worker (module worker) and sets it up with the app's base URL. */
export async function connectTrainer(): Promise<{ trainer: TrainerProxy; worker: Worker }> {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'usaf-engine' });
  const trainer = wrap<Trainer>(worker);
  await trainer.setup({ appBase: new URL('./', document.baseURI).href });
  return { trainer, worker };
}

/** A progress function the worker can call. */
export function progress<T>(fn: (p: T) => void): (p: T) => void {
  return proxy(fn);
}

/** Run callbacks the worker can call. */
export function callbacks(cb: RunCallbacks): RunCallbacks {
  return proxy(cb);
}

/** A token callback the worker can call (generate). */
export function tokenCallback(fn: (id: number, text: string) => void): (id: number, text: string) => void {
  return proxy(fn);
}
