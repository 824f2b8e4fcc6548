// usaf plan: GPU bytes by kind, host RAM and storage a training run needs, from a config alone (no GPU, no weights read);
// prints JSON with "fits" and exits 0 iff the run's peak fits in --gpu-gib, 1 if not.

import { readFile } from 'node:fs/promises';
import { command, str, num } from '../command.ts';
import { readSpec, QUANT_FLAGS, quantOption } from '../load-model.ts';
import { parseConfig } from '../../engine/model/config.ts';
import type { ModelSpec } from '../../engine/model/spec.ts';
import { fitSettings, planJson, planMemory, suggestSettings, type PlanSettings } from '../../engine/plan/memory.ts';
import { defaultTrainFrom } from './train.ts';

/** A model folder (its config.json) or a config.json path. */
export async function readSpecOrConfig(path: string): Promise<ModelSpec> {
  if (!path.endsWith('.json')) return readSpec(path);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return parseConfig(json);
}

export const plan = command(
  'plan',
  'memory plan of a training run (GPU bytes by kind, RAM, storage) as JSON; exit 0 iff it fits',
  {
    model: { type: 'string', help: 'model folder or its config.json' },
    'train-from': { type: 'number', env: 'TRAIN_FROM', help: 'first trained layer (default: top 8; top half for ≤ 16 layers)' },
    microbatch: { type: 'number', env: 'MICROBATCH', default: 2, help: 'samples per microbatch' },
    seq: { type: 'number', env: 'SEQ', default: 512, help: 'tokens per sample' },
    frac: { type: 'number', env: 'FRAC', default: 0.005, help: 'trained share of each selection tensor' },
    'frozen-cache-n': { type: 'number', env: 'FROZEN_CACHE_N', default: 0, help: 'samples whose frozen-layer output is cached on the GPU' },
    'gpu-gib': { type: 'number', default: 24, help: 'GPU memory to fit in, GiB' },
    'train-shared': { type: 'boolean', env: 'TRAIN_SHARED', help: 'the shared experts of the trained layers train too (DeepSeek-V3, Qwen2-MoE)' },
    ...QUANT_FLAGS,
    'stream-frozen': { type: 'boolean', env: 'STREAM_FROZEN', help: 'frozen layers streamed from storage (one layer on the GPU at a time); give --frozen-cache-n = the training samples: all are cached' },
    'expert-chunk': { type: 'number', env: 'EXPERT_CHUNK', help: '4-bit: experts per chunk of a trained layer\'s f32 scratch (default: all, or the largest chunk that fits --gpu-gib)' },
    'host-experts': { type: 'boolean', help: '4-bit: the trained layers\' 4-bit experts in host memory, copied into two GPU slots when used (default: only when the run does not fit --gpu-gib otherwise)' },
    'materialized-experts': { type: 'boolean', help: '4-bit: the steps materialize each trained layer\'s experts into an f32 scratch held for the run (TrainSettings.fusedExperts false) instead of the fused 4-bit W0 + sparse correction' },
  },
  async (f) => {
    const spec = await readSpecOrConfig(str(f, 'model'));
    const asked: PlanSettings = {
      trainFrom: num(f, 'train-from') ?? defaultTrainFrom(spec.numLayers),
      microbatch: num(f, 'microbatch')!,
      seq: num(f, 'seq')!,
      frac: num(f, 'frac')!,
      frozenCacheN: num(f, 'frozen-cache-n')!,
      quantizeExperts: quantOption(f) ?? null,
      trainShared: !!f['train-shared'],
      streamFrozen: !!f['stream-frozen'],
      ...(f['materialized-experts'] ? { fusedExperts: false } : {}),
      ...(num(f, 'expert-chunk') !== undefined ? { expertChunk: num(f, 'expert-chunk') } : {}),
      ...(f['host-experts'] ? { hostExperts: true } : {}),
    };
    const gpuBytes = Math.floor(num(f, 'gpu-gib')! * 2 ** 30);
    const settings = fitSettings(spec, asked, gpuBytes);
    const p = planMemory(spec, settings);
    // When it does not fit: the closest settings that do (null: none with this design).
    const suggestion = p.fits(gpuBytes) ? undefined : suggestSettings(spec, settings, gpuBytes);
    console.log(JSON.stringify({ model: spec.arch, ...planJson(p, gpuBytes), suggestion }, null, 2));
    return p.fits(gpuBytes) ? 0 : 1;
  },
);
