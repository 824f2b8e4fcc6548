// Contract: the table of architectures (config.json `model_type`) the engine can load, for parseConfig's checks
// and for the app to display. Plain data; adding a row here needs matching support in config-parts/tensors.
import type { ArchName } from './spec.ts';

export type ArchStatus = 'supported' | 'experimental' | 'planned';

export interface ArchInfo {
  arch: ArchName;
  displayName: string;
  status: ArchStatus;
  /** What sets the family apart, one line for the UI. */
  summary: string;
  /** Published Hub checkpoints of this family. */
  examples: readonly string[];
}

export const ARCHITECTURES: readonly ArchInfo[] = [
  {
    arch: 'qwen3_moe', displayName: 'Qwen3-MoE', status: 'supported',
    summary: 'GQA with per-head q/k RMSNorm, softmax top-k routing',
    examples: ['Qwen/Qwen3-30B-A3B', 'Qwen/Qwen3-235B-A22B'],
  },
  {
    arch: 'mixtral', displayName: 'Mixtral', status: 'supported',
    summary: 'GQA, 8 experts with top-2 softmax routing (renormalized)',
    examples: ['mistralai/Mixtral-8x7B-v0.1', 'mistralai/Mixtral-8x22B-v0.1'],
  },
  {
    arch: 'olmoe', displayName: 'OLMoE', status: 'supported',
    summary: 'q/k RMSNorm over the whole projection, 64 experts top-8',
    examples: ['allenai/OLMoE-1B-7B-0924'],
  },
  {
    arch: 'qwen2_moe', displayName: 'Qwen2-MoE / Qwen1.5-MoE', status: 'supported',
    summary: 'q/k/v bias, sigmoid-gated shared expert beside the routed experts',
    examples: ['Qwen/Qwen1.5-MoE-A2.7B', 'Qwen/Qwen2-57B-A14B'],
  },
  {
    arch: 'deepseek_v3', displayName: 'DeepSeek-V3', status: 'supported',
    summary: 'MLA attention, sigmoid group-limited routing with bias correction, shared expert, dense first layers',
    examples: ['deepseek-ai/DeepSeek-V3', 'moonshotai/Moonlight-16B-A3B'],
  },
];

export const SUPPORTED_MODEL_TYPES: readonly ArchName[] = ARCHITECTURES.map((a) => a.arch);

export function isSupportedArch(modelType: string): modelType is ArchName {
  return (SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType);
}

export function archInfo(arch: ArchName): ArchInfo {
  const info = ARCHITECTURES.find((a) => a.arch === arch);
  if (!info) throw new Error(`no registry entry for ${arch}`);
  return info;
}
