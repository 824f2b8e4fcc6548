// Opens a model folder in Node: config.json → spec, checkpoint (single file or shards), weights on the GPU.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GpuContext } from '../engine/gpu/device.ts';
import { openCheckpoint, type Checkpoint } from '../engine/io/checkpoint.ts';
import { parseConfig, withExpertLayout } from '../engine/model/config.ts';
import { detectExpertLayout } from '../engine/model/tensors.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import { loadWeights, type ModelWeights } from '../engine/train/weights.ts';
import { nodeFolder } from '../node/folder.ts';

export interface LoadedModel {
  dir: string;
  spec: ModelSpec;
  ckpt: Checkpoint;
  weights: ModelWeights;
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

/** `trainFrom`: layers from there on get f32 routed experts (and f32 shared experts with `trainShared`), for training. */
export async function openModel(gpu: GpuContext, dir: string, opts: { trainFrom?: number; trainShared?: boolean } = {}): Promise<LoadedModel> {
  let spec = await readSpec(dir);
  const ckpt = await openCheckpoint(nodeFolder(dir));
  const layout = detectExpertLayout(ckpt.tensors.keys());
  if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
  const trained = new Set<number>();
  if (opts.trainFrom !== undefined) for (let L = opts.trainFrom; L < spec.numLayers; L++) trained.add(L);
  const weights = await loadWeights(gpu, spec, ckpt, { f32ExpertLayers: trained, f32SharedLayers: opts.trainShared ? trained : undefined });
  return { dir, spec, ckpt, weights };
}
