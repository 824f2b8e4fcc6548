// The stored 4-bit checkpoint (FORMAT.md "Stored 4-bit checkpoint"): tensor names of a layer's two 4-bit expert buffers,
// the `__metadata__` every shard carries, and reading it back from an opened Checkpoint. Pure, no I/O of its own.

import type { Checkpoint } from '../io/checkpoint.ts';
import type { ExpertLayout, ModelSpec } from '../model/spec.ts';
import { familyAdapter } from '../model/registry.ts';

/** Value of `usaf_format` in the metadata; bump when the stored bytes change meaning. */
export const STORED_Q4_FORMAT = 'usaf-q4/1';
export const STORED_Q4_QUANTIZER = 'hqq';

export interface StoredQ4Info {
  groupSize: number;
  /** Expert layout of the source checkpoint (export writes the experts back under these Hub names). */
  expertLayout: ExpertLayout;
}

/** Names of layer L's two 4-bit buffers (dtype U32, shape [words]): gate|up and down. */
export function q4ExpertNames(spec: ModelSpec, L: number): { gateUp: string; down: string } {
  const block = familyAdapter(spec.arch).naming.moeBlock(spec.expertLayout);
  const p = `model.layers.${L}.${block}.experts.`;
  return { gateUp: `${p}gate_up.q4`, down: `${p}down.q4` };
}

/** A name of a stored 4-bit buffer. */
export const isQ4Name = (name: string): boolean => /\.experts\.(gate_up|down)\.q4$/.test(name);

/** The `__metadata__` of every shard of a stored 4-bit checkpoint. */
export function storedQ4Metadata(info: StoredQ4Info): Record<string, string> {
  return {
    format: 'pt',
    usaf_format: STORED_Q4_FORMAT,
    usaf_quantizer: STORED_Q4_QUANTIZER,
    usaf_group_size: String(info.groupSize),
    usaf_expert_layout: info.expertLayout,
  };
}

/**
 * The stored 4-bit info of an opened checkpoint, or null when it holds no 4-bit buffers. Throws on a checkpoint that
 * has `.q4` tensors without valid metadata, or whose shards disagree.
 */
export function storedQ4Info(ckpt: Checkpoint): StoredQ4Info | null {
  if (![...ckpt.tensors.keys()].some(isQ4Name)) return null;
  let found: StoredQ4Info | null = null;
  for (const [path, f] of ckpt.files) {
    const m = f.metadata;
    const bad = (what: string): Error => new Error(`${path}: stored 4-bit checkpoint with ${what}`);
    if (m.usaf_format !== STORED_Q4_FORMAT) throw bad(`usaf_format ${JSON.stringify(m.usaf_format)} (this build reads ${STORED_Q4_FORMAT})`);
    if (m.usaf_quantizer !== STORED_Q4_QUANTIZER) throw bad(`quantizer ${JSON.stringify(m.usaf_quantizer)}`);
    const G = Number(m.usaf_group_size);
    if (!Number.isInteger(G) || G <= 0 || G % 8 !== 0) throw bad(`group size ${JSON.stringify(m.usaf_group_size)}`);
    const layout = m.usaf_expert_layout;
    if (layout !== 'fused' && layout !== 'per_expert') throw bad(`expert layout ${JSON.stringify(layout)}`);
    if (found && (found.groupSize !== G || found.expertLayout !== layout)) throw bad('shards that disagree on group size or layout');
    found = { groupSize: G, expertLayout: layout };
  }
  return found;
}
