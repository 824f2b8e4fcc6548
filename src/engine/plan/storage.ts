// Contract: bytes a model takes at rest, from its ModelSpec alone: every tensor in bf16 (the checkpoint), and the 4-bit
// store (routed experts 4-bit in groups of G input weights, s and z 16-bit per group; every other tensor bf16).

import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { allTensors } from '../model/tensors.ts';

/** Default 4-bit group size (consecutive input-dimension weights sharing one scale and zero). */
export const Q4_GROUP = 128;

export const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** A routed-expert weight (quantized to 4 bits in the store). */
export const isRoutedExpert = (e: TensorEntry): boolean => e.role.startsWith('expert.');

/** Bytes of one tensor in bf16. */
export function bf16Bytes(e: TensorEntry): number {
  return 2 * numel(e.shape);
}

/** Bytes of one matrix [..., rows, in] in 4-bit: 0.5 byte per weight + 4 bytes (16-bit s and z) per group of G inputs. */
export function q4Bytes(shape: number[], group = Q4_GROUP): number {
  const inDim = shape[shape.length - 1]!;
  const rows = numel(shape) / inDim;
  return Math.ceil(numel(shape) / 2) + rows * Math.ceil(inDim / group) * 4;
}

/** Bytes of a tensor in the 4-bit store: routed experts 4-bit, the rest bf16. */
export function storedQ4Bytes(e: TensorEntry, group = Q4_GROUP): number {
  return isRoutedExpert(e) ? q4Bytes(e.shape, group) : bf16Bytes(e);
}

export interface StoragePlan {
  /** Every tensor in bf16 (what a bf16 checkpoint holds). */
  bf16: number;
  /** The 4-bit store: routed experts in 4 bits (groups of `group`), everything else bf16. */
  q4: number;
  /** Of q4: the routed experts alone. */
  q4Experts: number;
  group: number;
}

export function planStorage(spec: ModelSpec, group = Q4_GROUP): StoragePlan {
  let bf16 = 0, q4 = 0, q4Experts = 0;
  for (const e of allTensors(spec)) {
    bf16 += bf16Bytes(e);
    const q = storedQ4Bytes(e, group);
    q4 += q;
    if (isRoutedExpert(e)) q4Experts += q;
  }
  return { bf16, q4, q4Experts, group };
}
