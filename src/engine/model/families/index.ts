// Contract: every supported family's adapter, in display order. Adding a family = one adapter file listed here + its
// fixture under test/fixtures/<arch>/ (test/unit/model/families.test.ts and the GPU parity test pick it up).
import type { FamilyAdapter } from './adapter.ts';
import { deepseekV3 } from './deepseek_v3.ts';
import { mixtral } from './mixtral.ts';
import { olmoe } from './olmoe.ts';
import { qwen2Moe } from './qwen2_moe.ts';
import { qwen3Moe } from './qwen3_moe.ts';

export const FAMILIES = [qwen3Moe, mixtral, olmoe, qwen2Moe, deepseekV3] as const;

/** config.json `model_type` values with an adapter. */
export type FamilyArch = (typeof FAMILIES)[number]['arch'];

export function familyOf(arch: string): FamilyAdapter | undefined {
  return (FAMILIES as readonly FamilyAdapter[]).find((f) => f.arch === arch);
}
