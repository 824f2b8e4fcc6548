// Layer-major frozen pass: the hidden state entering layer TRAIN_FROM for many windows at once. Embedding for all
// windows (a streamed embedding loaded for it and freed after), then per frozen layer: its weights on the GPU (resident, or streamed from the checkpoint and freed after),
// every window through it in chunks of the run's microbatch. Storage is read once per pass, not once per window.
//
// Where windows' hidden states live between layers: training samples in the FrozenCache (one slot per sample: on the
// GPU, or in host memory when the frozen layers are streamed);
// eval windows in a HostStore (f32 in host memory: seq·H·4 bytes per window, 4 MiB for Qwen3-30B-A3B at SEQ 512), or
// in the FrozenCache when the eval set is the training set itself.

import type { GpuContext } from '../gpu/device.ts';
import { BufferPool, readF32, withPool } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Forward } from './forward.ts';
import { HostStore, type FrozenCache, type WindowStore } from './frozen-cache.ts';
export { HostStore, type WindowStore } from './frozen-cache.ts';
import { layerBuffers, loadEmbed, loadEmbedRows, loadLayer, type LoadOptions, type ModelWeights } from './weights.ts';
import type { OnProgress, SampleSet } from './types.ts';
import type { Trainer } from './trainer.ts';

/** Where streamed frozen layers come from: the checkpoint and the options loadWeights was given. */
export interface FrozenSource {
  ckpt: Checkpoint;
  load: LoadOptions;
}

/** The FrozenCache as a store: window w = sample w. */
export function cacheStore(cache: FrozenCache): WindowStore {
  return { load: (enc, w, dst, i) => cache.get(enc, w, dst, i), save: (enc, w, src, i) => cache.put(enc, w, src, i), flush: () => cache.flush() };
}

/** Windows 0..count-1 of a sample set and where their hidden states go. */
export interface WindowGroup {
  set: SampleSet;
  count: number;
  store: WindowStore;
}

/** Most embedding rows a streamed frozen pass reads one by one (runs of consecutive ids at once) instead of the table. */
const MAX_EMBED_ROWS = 16384;

/** The distinct token ids of every window of every group, ascending. */
function distinctIds(groups: WindowGroup[]): Uint32Array {
  const seen = new Set<number>();
  for (const g of groups) {
    const ids = new Uint32Array(g.set.seq);
    const targets = new Uint32Array(g.set.seq);
    for (let w = 0; w < g.count; w++) {
      g.set.fill(w, ids, targets, 0);
      for (const id of ids) seen.add(id);
    }
  }
  return Uint32Array.from(seen).sort();
}

/**
 * Runs embedding + layers 0..trainFrom-1 for every window of every group, layer-major, in chunks of `chunk` windows;
 * leaves each window's input of layer trainFrom in its store. Streamed layers (LayerWeights.streamed) are loaded from
 * `source` just before they run and freed right after.
 */
export async function frozenPass(fwd: Forward, weights: ModelWeights, trainFrom: number, chunk: number, groups: WindowGroup[], source: FrozenSource | null, onProgress?: OnProgress): Promise<void> {
  const gpu = fwd.gpu;
  const spec = fwd.spec;
  const step = async (g: WindowGroup, w0: number, count: number, body: (enc: Encoder, batch: number, seq: number) => void, fromStore: boolean) => {
    const seq = g.set.seq;
    const enc = new Encoder(gpu, 'frozen-pass');
    if (fromStore) for (let i = 0; i < count; i++) g.store.load(enc, w0 + i, fwd.resid, i);
    body(enc, count, seq);
    for (let i = 0; i < count; i++) g.store.save(enc, w0 + i, fwd.resid, i);
    enc.submit();
    await g.store.flush?.();
  };
  const chunks = function* (g: WindowGroup) {
    for (let w = 0; w < g.count; w += chunk) yield [w, Math.min(chunk, g.count - w)] as const;
  };
  // streamed weights: a layer's buffers go to the next streamed layer (same shapes); all are destroyed after the pass,
  // but for the slots of hosted experts (weights.slots), which the streamed layers' experts borrow (same layout)
  const pool = new BufferPool();
  const slots = weights.slots?.buffers() ?? [];
  pool.give(slots);
  try {
    // a streamed embedding (ModelWeights.embed null) is loaded for the embedding pass only, like a streamed layer
    const embedStreamed = !weights.embed;
    // a streamed embedding: only the rows of the windows' tokens when they are few, each window's ids then renumbered
    // to those rows; else the whole table
    let row: Map<number, number> | null = null;
    if (embedStreamed) {
      if (!source) throw new Error('the embedding is streamed but no checkpoint was given to read it from');
      const ids = distinctIds(groups);
      const few = ids.length <= Math.min(MAX_EMBED_ROWS, spec.vocab / 8) && ids.every((id) => id < spec.vocab);
      const rows = few ? await withPool(gpu, pool, () => loadEmbedRows(gpu, spec, source.ckpt, source.load, ids)) : null;
      if (rows) row = new Map(Array.from(ids, (id, i) => [id, i]));
      weights.embed = rows ?? await withPool(gpu, pool, () => loadEmbed(gpu, spec, source.ckpt, source.load));
    }
    for (const g of groups) {
      for (const [w0, count] of chunks(g)) {
        const seq = g.set.seq;
        const ids = new Uint32Array(count * seq);
        const targets = new Uint32Array(count * seq);
        for (let i = 0; i < count; i++) g.set.fill(w0 + i, ids, targets, i * seq);
        if (row) for (let t = 0; t < ids.length; t++) ids[t] = row.get(ids[t]!)!;
        fwd.setBatch(ids, count, seq, targets); // positions too (t mod seq): valid for every later chunk of this length
        await step(g, w0, count, (enc, _b, _s) => fwd.embed(enc, count * seq), false);
      }
    }
    if (embedStreamed) {
      // freed, not pooled: no layer buffer has its size, and it must not stay beside the layers (the plan's staging is
      // the larger of the two, not their sum)
      await gpu.device.queue.onSubmittedWorkDone();
      weights.embed!.buf.destroy();
      weights.embed = null;
    }
    for (let L = 0; L < trainFrom; L++) {
      const placeholder = weights.layers[L]!;
      if (placeholder.streamed) {
        if (!source) throw new Error(`layer ${L} is streamed but no checkpoint was given to read it from`);
        weights.layers[L] = await withPool(gpu, pool, () => loadLayer(gpu, spec, L, source.ckpt, source.load));
      }
      for (const g of groups) for (const [w0, count] of chunks(g)) await step(g, w0, count, (enc, b, s) => fwd.layer(enc, L, fwd.resid, fwd.acts, b, s), true);
      if (placeholder.streamed) {
        await gpu.device.queue.onSubmittedWorkDone();
        pool.give(layerBuffers(weights.layers[L]!));
        weights.layers[L] = placeholder;
      }
      onProgress?.(L + 1, trainFrom);
    }
    await gpu.device.queue.onSubmittedWorkDone();
  } finally {
    weights.slots?.invalidate();
    pool.withdraw(slots);
    pool.destroy();
  }
}

/**
 * Sum of next-token losses over windows 0..n-1 of `set` from their stored inputs of layer trainFrom: the trained layers
 * and the head only, in chunks of `chunk` windows (the same kernels and chunks as Forward.run).
 */
export async function evaluateFromStore(fwd: Forward, spec: ModelSpec, trainFrom: number, set: SampleSet, n: number, chunk: number, store: WindowStore, onProgress?: OnProgress): Promise<{ sum: number; tokens: number }> {
  let sum = 0;
  let tokens = 0;
  for (let w = 0; w < n; w += chunk) {
    const count = Math.min(chunk, n - w);
    const seq = set.seq;
    const ids = new Uint32Array(count * seq);
    const targets = new Uint32Array(count * seq);
    for (let i = 0; i < count; i++) set.fill(w + i, ids, targets, i * seq);
    fwd.setBatch(ids, count, seq, targets);
    const enc = new Encoder(fwd.gpu, 'eval-cached');
    for (let i = 0; i < count; i++) store.load(enc, w + i, fwd.resid, i);
    for (let L = trainFrom; L < spec.numLayers; L++) fwd.layer(enc, L, fwd.resid, fwd.acts, count, seq);
    fwd.head(enc, count * seq);
    enc.submit();
    const rows = await readF32(fwd.gpu, fwd.rowLoss, 0, count * seq);
    for (let t = 0; t < count * seq; t++) if (targets[t] !== 0xffffffff) (sum += rows[t]!), tokens++;
    onProgress?.(w + count, n);
  }
  return { sum, tokens };
}

/**
 * A Trainer's frozen inputs, layer-major: every training sample into its frozen cache, and the first evalWindows windows
 * of each eval set into Trainer.evalStores (the cache itself when the set is the training set, else a HostStore).
 */
export async function fillFrozen(t: Trainer, source: FrozenSource | null, evalSets: SampleSet[], onProgress?: OnProgress): Promise<void> {
  if (t.s.trainFrom === 0) return;
  const groups: WindowGroup[] = [{ set: t.data, count: t.data.count, store: cacheStore(t.cache) }];
  if (t.cache.capacity < t.data.count) throw new Error(`the frozen cache holds ${t.cache.capacity} of ${t.data.count} samples; the layer-major pass needs all`);
  for (const set of evalSets) {
    const count = Math.min(set.count, t.s.evalWindows ?? set.count);
    if (set === t.data) t.evalStores.set(set, { store: groups[0]!.store, count });
    else if (!t.evalStores.has(set)) {
      const store = new HostStore(t.gpu, count, set.seq, t.spec.hidden);
      groups.push({ set, count, store });
      t.evalStores.set(set, { store, count });
    }
  }
  await frozenPass(t.graph.fwd, t.weights, t.s.trainFrom, t.s.microbatch, groups, source, onProgress);
}
