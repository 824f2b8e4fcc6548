// Contract: the table of architectures (config.json `model_type`) the engine can load, for parseConfig's checks and for the
// app to display, read off the family adapters (families/index.ts); familyAdapter gives the generic code a family's hooks.
import type { ArchStatus, FamilyAdapter } from './families/adapter.ts';
import { FAMILIES, familyOf } from './families/index.ts';
import type { ArchName } from './spec.ts';

export type { ArchStatus } from './families/adapter.ts';

export interface ArchInfo {
  arch: ArchName;
  displayName: string;
  status: ArchStatus;
  /** What sets the family apart, one line for the UI. */
  summary: string;
  /** Published Hub checkpoints of this family. */
  examples: readonly string[];
}

export const ARCHITECTURES: readonly ArchInfo[] = FAMILIES.map(({ arch, displayName, status, summary, examples }) => ({ arch, displayName, status, summary, examples }));

export const SUPPORTED_MODEL_TYPES: readonly ArchName[] = ARCHITECTURES.map((a) => a.arch);

export function isSupportedArch(modelType: string): modelType is ArchName {
  return (SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType);
}

export function archInfo(arch: ArchName): ArchInfo {
  const info = ARCHITECTURES.find((a) => a.arch === arch);
  if (!info) throw new Error(`no registry entry for ${arch}`);
  return info;
}

/** The adapter of a supported family (throws for any other name). */
export function familyAdapter(arch: ArchName): FamilyAdapter {
  const f = familyOf(arch);
  if (!f) throw new Error(`no family adapter for ${arch}`);
  return f;
}
