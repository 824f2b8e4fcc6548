// Contract: the config.json of each model a built-in preset names, shipped with the app so that a preset's memory
// plan can be shown before (or without) importing that model. Plain JSON, parsed by the engine's parseConfig.

import demo from './configs/usaf-demo-moe.json';
import qwen3_30b_a3b from './configs/Qwen3-30B-A3B.json';

export const PRESET_MODEL_CONFIGS: Readonly<Record<string, unknown>> = Object.freeze({
  'usaf-demo-moe': demo,
  'Qwen/Qwen3-30B-A3B': qwen3_30b_a3b,
});
