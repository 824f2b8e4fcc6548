// Opens a model folder in Node: config.json → spec, checkpoint (single file or shards), weights on the GPU.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GpuContext } from '../engine/gpu/device.ts';
import { openCheckpoint, type Checkpoint } from '../engine/io/checkpoint.ts';
import { parseConfig, withExpertLayout } from '../engine/model/config.ts';
import { detectExpertLayout } from '../engine/model/tensors.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import { loadWeights, type LoadOptions, type ModelWeights } from '../engine/train/weights.ts';
import { storedQ4Info } from '../engine/quant/stored-q4.ts';
import { checkGpuGroup } from '../engine/quant/format.ts';
import { nodeFolder } from '../node/folder.ts';

export interface LoadedModel {
  dir: string;
  spec: ModelSpec;
  ckpt: Checkpoint;
  weights: ModelWeights;
  /** The 4-bit setting in effect: the one asked for, or the stored checkpoint's own. */
  quantizeExperts?: { groupSize: number };
  /** The options the weights were loaded with (the frozen pass loads streamed layers with the same). */
  load: LoadOptions;
}

export async function readSpec(dir: string): Promise<ModelSpec> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  } catch (e) {
    throw new Error(`${join(dir, 'config.json')}: ${(e as Error).message}`);
  }
  return parseConfig(json);
}

/** Flags of the commands that load a model for training or evaluation: 4-bit routed experts. */
export const QUANT_FLAGS = {
  'quantize-experts': { type: 'boolean', env: 'QUANTIZE_EXPERTS', help: 'keep routed experts in 4 bits (HQQ), quantized on the GPU while loading' },
  'group-size': { type: 'number', env: 'GROUP_SIZE', default: 128, help: '4-bit group size (a multiple of 8, at most 128)' },
} as const;

/** openModel's quantizeExperts from parsed QUANT_FLAGS (undefined when off). */
export function quantOption(f: Record<string, unknown>): OpenOptions['quantizeExperts'] {
  if (!f['quantize-experts']) return undefined;
  const groupSize = Number(f['group-size'] ?? 128);
  checkGpuGroup(groupSize); // before anything loads
  return { groupSize };
}

export interface OpenOptions {
  /** Layers trainFrom.. train (their experts load in f32, unless quantized). */
  trainFrom?: number;
  /** Routed experts in 4 bits (groups of groupSize), quantized on the GPU while loading. */
  quantizeExperts?: { groupSize: number };
  /** Shared experts of the trained layers load in f32 too, for training them (DeepSeek, Qwen2-MoE). */
  trainShared?: boolean;
  /** Layers below trainFrom are not uploaded (the layer-major frozen pass streams them from `ckpt`). */
  streamFrozen?: boolean;
  /** The trained layers' 4-bit experts in host-visible buffers, copied into two GPU slots when used (LoadOptions.hostExperts). */
  hostExperts?: boolean;
}

/** `trainFrom`: layers from there on get f32 routed experts (and f32 shared experts with `trainShared`), for training. */
export async function openModel(gpu: GpuContext, dir: string, opts: OpenOptions = {}): Promise<LoadedModel> {
  let spec = await readSpec(dir);
  const ckpt = await openCheckpoint(nodeFolder(dir));
  const stored = storedQ4Info(ckpt);
  const layout = stored ? stored.expertLayout : detectExpertLayout(ckpt.tensors.keys());
  if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
  const trained = new Set<number>();
  if (opts.trainFrom !== undefined) for (let L = opts.trainFrom; L < spec.numLayers; L++) trained.add(L);
  const load: LoadOptions = { f32ExpertLayers: trained, f32SharedLayers: opts.trainShared ? trained : undefined, quantizeExperts: opts.quantizeExperts };
  if (opts.streamFrozen) {
    if (!opts.trainFrom) throw new Error('streaming frozen layers needs trainFrom > 0');
    load.streamFrozenBelow = opts.trainFrom;
  }
  if (opts.hostExperts) load.hostExperts = trained;
  const weights = await loadWeights(gpu, spec, ckpt, load);
  const quantizeExperts = opts.quantizeExperts ?? (stored ? { groupSize: stored.groupSize } : undefined);
  return { dir, spec, ckpt, weights, quantizeExperts, load };
}

/** The group size of a stored 4-bit checkpoint in `dir` (quant/stored-q4.ts), or undefined for a plain one. */
export async function storedQuantOption(dir: string): Promise<{ groupSize: number } | undefined> {
  const ckpt = await openCheckpoint(nodeFolder(dir));
  try {
    const info = storedQ4Info(ckpt);
    return info ? { groupSize: info.groupSize } : undefined;
  } finally {
    await ckpt.close();
  }
}
