// Contract: the store's Importer over the engine's quantizing import (importQ4: experts to 4 bits on the GPU a layer at
// a time, streamed tensor by tensor into the sink).

import type { GpuContext } from '../engine/gpu/device.ts';
import { importQ4, importQ4Size } from '../engine/quant/import-q4.ts';
import type { Importer } from './model-store.ts';

/** `gpu` is asked for only when an import runs; `job` brackets the GPU work (the worker frees what it allocated). */
export function q4Importer(gpu: () => Promise<GpuContext>, job: <T>(g: GpuContext, work: () => Promise<T>) => Promise<T> = (_g, w) => w()): Importer {
  return {
    size: (spec, src, opts) => importQ4Size(spec, src, opts),
    run: async (j) => {
      const g = await gpu().catch((e: unknown) => {
        throw new Error(`importing quantizes the experts to 4 bits on the GPU, and there is none: ${(e as Error).message}`);
      });
      await job(g, () => importQ4(g, j.spec, j.sink, j.src, j.folder, {
        groupSize: j.groupSize, maxShardBytes: j.maxShardBytes, copyFiles: j.copyFiles, resumeFrom: j.resumeFrom, onProgress: j.onProgress,
      }));
    },
  };
}
