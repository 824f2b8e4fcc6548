// Contract: the worker's one model store (src/store: OPFS + IndexedDB, quantizing import on the worker's GPU) and the
// single import in progress, which cancelImport aborts (what was stored is kept for a resume); the folder handle of an
// import from a picked folder is kept (src/store/origins.ts).

import type { GpuContext } from '../engine/gpu/device.ts';
import { idbManifests } from '../store/manifests.ts';
import { ModelStore } from '../store/model-store.ts';
import { root } from '../store/opfs.ts';
import { idbOrigins } from '../store/origins.ts';
import { q4Importer } from '../store/q4-importer.ts';
import { beginGpuJob } from './gpu-jobs.ts';
import type { ImportProgress, ModelSource, StoredModel } from './protocol.ts';

export { DEMO_MODEL_ID, impliedSettings, storedSpec } from '../store/model-store.ts';
export { stripCommonFolder } from '../store/sources.ts';

export function workerModelStore(gpu: () => Promise<GpuContext>): ModelStore {
  const importer = q4Importer(gpu, async (g, work) => {
    const end = beginGpuJob(g.device);
    try {
      return await work();
    } finally {
      end();
    }
  });
  return new ModelStore({
    root,
    manifests: idbManifests(),
    importer,
    estimate: () => navigator.storage.estimate(),
  });
}

let running: AbortController | null = null;
const origins = idbOrigins();

export function cancelRunningImport(): void {
  running?.abort(new DOMException('import cancelled', 'AbortError'));
}

export async function importModel(store: ModelStore, source: ModelSource, appBase: string, onProgress: (p: ImportProgress) => void): Promise<StoredModel> {
  if (running) throw new Error('another import is running; wait for it or cancel it');
  const ac = new AbortController();
  running = ac;
  try {
    const m = await store.import(source, appBase, onProgress, ac.signal);
    // The folder's handle, for exports: they merge onto the original weights (the store keeps experts in 4 bits).
    if (source.kind === 'files' && source.handle) await origins.set(m.id, { kind: 'folder', name: source.handle.name, handle: source.handle });
    return m;
  } finally {
    running = null;
  }
}
