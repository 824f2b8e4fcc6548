// Helpers for the train-io tests (export, delta, training checkpoint, sinks): the demo model, fine-tune-like changes.
// A "change" moves a seeded random subset of a tensor's entries by amounts well above bf16's spacing, like a sparse fine-tune.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { decodeF32 } from '../../src/engine/io/dtype.ts';
import { rng } from './random.ts';

/** The embedded demo model (4 bf16 shards, per-expert tensors), relative to the repository root vitest runs in. */
export const DEMO_DIR = resolve('public/models/usaf-demo-moe');
export const FIXTURE_DIR = (arch: string): string => resolve('test/fixtures', arch);

export async function decoded(ckpt: Checkpoint, name: string): Promise<Float32Array> {
  return decodeF32(ckpt.tensors.get(name)!.dtype, await ckpt.readTensor(name));
}

/** The base values of `name` with a fraction `frac` of its entries moved by up to ±`scale` (seeded). */
export async function sparselyChanged(ckpt: Checkpoint, name: string, frac: number, seed: number, scale = 0.05): Promise<Float32Array> {
  const v = await decoded(ckpt, name);
  const r = rng(seed);
  for (let i = 0; i < v.length; i++) if (r() < frac) v[i] += scale * (2 * r() - 1) + 1e-3;
  return v;
}

/** A fresh temporary folder, and a function removing it. */
export async function tempFolder(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `usaf-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
