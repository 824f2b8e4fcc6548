// Contract: the built-in presets shown in the editor. Each is the defaults plus a few overrides; the memory plan
// (src/engine/plan/memory.ts) is the judge of whether a preset fits a given GPU — the values here are the starting points we ship.

import { checkValue, DEFAULTS, RUN_SETTINGS, validateSettings, type Settings } from './schema.ts';

export interface Preset {
  id: string;
  name: string;
  description: string;
  /** The model the preset was written for (a Hub id, or the demo's id), or null for any. */
  model: string | null;
  /** The GPU memory the preset is meant to fit in, GiB (null: whatever this GPU has). */
  gpuGiB: number | null;
  settings: Settings;
  /** Evaluation windows per set the preset sets on the Run screen (a run option, not a setting); absent: left as it is. */
  evalWindows?: number | null;
}

function preset(id: string, name: string, model: string | null, gpuGiB: number | null, description: string, overrides: Partial<Settings>, run: { evalWindows?: number | null } = {}): Preset {
  const v = validateSettings({ ...DEFAULTS, ...overrides });
  if (!v.ok) throw new Error(`built-in preset ${id}: ${v.errors.join('; ')}`);
  const windows = run.evalWindows === undefined ? null : checkValue(RUN_SETTINGS.find((s) => s.key === 'evalWindows')!, run.evalWindows);
  if (windows) throw new Error(`built-in preset ${id}: EVAL_WINDOWS: ${windows}`);
  return Object.freeze({ id, name, model, gpuGiB, description, settings: Object.freeze(v.settings) as Settings, ...run });
}

export const BUILTIN_PRESETS: readonly Preset[] = Object.freeze([
  preset('demo', 'Demo', 'usaf-demo-moe', null,
    'The built-in 16 M-parameter Qwen3-MoE demo: the method exactly as docs/method.md states it (180 steps of 2 × 512 tokens, 0.5 % of the expert weights of layers 4–7, peak LR 2e-4), every evaluation on all windows.',
    {}, { evalWindows: null }),
  preset('quick-demo', 'Quick demo', 'usaf-demo-moe', null,
    'The demo model in a few minutes, also on a CPU fallback adapter: differs from Demo in STEPS 12 (not 180), MICROBATCH 1 (not 2), SEQ 128 (not 512), EVAL_EVERY 0 (not 15: perplexity only before and after), N_IMPORTANCE 1 (not 3), RESELECT_EVERY 8 (not 50) and LR_PEAK 1e-3 (not 2e-4: so few steps still move the loss). It also sets the Run screen\'s evaluation windows to 4 per set (Demo: all of them), so each perplexity is measured on 512 tokens per set. Measured on SwiftShader in Chromium on a busy 2-core machine, 40 steps with 32 windows took over 12 minutes and 20 steps with 8 windows 7.4 minutes (a step about 7 s), and these numbers 6.7 minutes (a step about 13 s, the machine busier); on a CPU not shared with other work it is shorter.',
    { steps: 12, microbatch: 1, seq: 128, evalEvery: 0, nImportance: 1, reselectEvery: 8, lrPeak: 1e-3 }, { evalWindows: 4 }),
  preset('qwen3-30b-a3b-12gb', 'Qwen3-30B-A3B on a 12 GB GPU', 'Qwen/Qwen3-30B-A3B', 12,
    'Top 8 of 48 layers trained; expert weights of every layer in 4 bits with groups of 64; the 40 frozen layers stay in storage (STREAM_FROZEN): read once before training, every sequence\'s output cached in host memory; one sequence per pass with two accumulated. Plans at about 10.9 GiB, leaving room for the display.',
    { quantizeExperts: true, quantGroupSize: 64, microbatch: 1, accum: 2, streamFrozen: true }),
  preset('qwen3-30b-a3b-24gb', 'Qwen3-30B-A3B on a 24 GB GPU', 'Qwen/Qwen3-30B-A3B', 24,
    'Top 8 of 48 layers trained; expert weights of every layer in 4 bits with groups of 64; the frozen layers stay in storage (STREAM_FROZEN), their outputs cached in host memory; the method\'s microbatch of 2 × 512 tokens. Plans at about 12 GiB (with every frozen layer resident it would take over 22.5 GiB even in expert chunks, too tight for a 24 GB card).',
    { quantizeExperts: true, quantGroupSize: 64, microbatch: 2, accum: 1, streamFrozen: true }),
]);
