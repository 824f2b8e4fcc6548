// Contract: the family adapters (src/engine/model/families) are exactly the families of the HF fixtures under
// test/fixtures/<model_type>/ (config.json, model.safetensors, reference.safetensors with transformers' answers, meta.json),
// whose tensor names the spec predicts exactly (test/gpu/parity.test.ts runs each adapter against them), and each has a
// registry row named after transformers' model class, with published checkpoints of that type as examples.
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { FAMILIES } from '../../../src/engine/model/families/index.ts';
import { archInfo, isSupportedArch } from '../../../src/engine/model/registry.ts';
import { allTensors } from '../../../src/engine/model/tensors.ts';
import type { ArchName } from '../../../src/engine/model/spec.ts';
import { here, loadJsonFile, readSafetensorsShapes } from './load.ts';

const FIXTURES = here('../../fixtures/');
const fixture = (arch: string, file = ''): string => `${FIXTURES}${arch}/${file}`;

/** model_type of each fixture folder's config.json (written by transformers, see meta.json), by folder. */
const fixtureTypes = (): Map<string, string> =>
  new Map(readdirSync(FIXTURES, { withFileTypes: true }).filter((d) => d.isDirectory())
    .map((d) => [d.name, (loadJsonFile(fixture(d.name, 'config.json')) as { model_type: string }).model_type]));

/** Published Hub checkpoints and the model_type their config.json declares (facts from the Hub, not from our tables). */
const PUBLISHED: Record<string, string> = {
  'Qwen/Qwen3-30B-A3B': 'qwen3_moe', 'Qwen/Qwen3-235B-A22B': 'qwen3_moe', 'Qwen/Qwen3-Coder-30B-A3B-Instruct': 'qwen3_moe',
  'mistralai/Mixtral-8x7B-v0.1': 'mixtral', 'mistralai/Mixtral-8x22B-v0.1': 'mixtral', 'mistralai/Mixtral-8x7B-Instruct-v0.1': 'mixtral',
  'allenai/OLMoE-1B-7B-0924': 'olmoe', 'allenai/OLMoE-1B-7B-0125': 'olmoe',
  'Qwen/Qwen1.5-MoE-A2.7B': 'qwen2_moe', 'Qwen/Qwen2-57B-A14B': 'qwen2_moe',
  'deepseek-ai/DeepSeek-V3': 'deepseek_v3', 'deepseek-ai/DeepSeek-R1': 'deepseek_v3', 'moonshotai/Moonlight-16B-A3B': 'deepseek_v3',
};

describe('family adapters', () => {
  it('are exactly the model types of the HF fixtures (each folder named after its config.json model_type)', () => {
    const types = fixtureTypes();
    for (const [dir, type] of types) expect(type, `test/fixtures/${dir}/config.json`).toBe(dir);
    const archs = FAMILIES.map((f) => f.arch);
    expect(new Set(archs).size).toBe(archs.length);
    expect([...archs].sort()).toEqual([...types.values()].sort());
  });

  it('the registry accepts the fixtures\' model types and refuses others', () => {
    for (const type of fixtureTypes().values()) expect(isSupportedArch(type), type).toBe(true);
    for (const type of ['llama', 'qwen3', 'mistral', 'dbrx', '', '__proto__']) expect(isSupportedArch(type), type).toBe(false);
  });
});

describe.each(FAMILIES.map((f) => f.arch))('%s', (arch) => {
  it('has a fixture with transformers\' reference answers', () => {
    for (const file of ['config.json', 'model.safetensors', 'reference.safetensors', 'meta.json']) {
      expect(existsSync(fixture(arch, file)), `test/fixtures/${arch}/${file}`).toBe(true);
    }
    const ref = readSafetensorsShapes(fixture(arch, 'reference.safetensors'));
    for (const name of ['input_ids', 'logits', 'loss', 'hidden.0']) expect(Object.keys(ref), name).toContain(name);
    expect(Object.keys(ref).some((n) => n.startsWith('grad.'))).toBe(true);
  });

  it('its fixture config parses to this family, and the spec names every fixture tensor', () => {
    const cfg = loadJsonFile(fixture(arch, 'config.json')) as Record<string, unknown>;
    expect(cfg.model_type).toBe(arch);
    const spec = parseConfig(cfg);
    const header = readSafetensorsShapes(fixture(arch, 'model.safetensors'));
    const predicted = Object.fromEntries(allTensors(spec).map((t) => [t.name, t.shape]));
    const { __metadata__: _meta, ...tensors } = header as Record<string, number[]>;
    expect(predicted).toEqual(tensors);
  });

  it('has registry info for the app: a name from transformers\' model class, published checkpoints of this type', () => {
    const info = archInfo(arch as ArchName);
    const meta = loadJsonFile(fixture(arch, 'meta.json')) as { model_class: string };
    // 'Qwen2-MoE / Qwen1.5-MoE' → qwen2moe, found in qwen2moeforcausallm
    const squash = (x: string) => x.toLowerCase().replace(/[^a-z0-9]/g, '');
    expect(squash(meta.model_class)).toContain(squash(info.displayName.split(' / ')[0]!));
    expect(info.summary.length).toBeGreaterThan(10);
    expect(info.examples.length).toBeGreaterThan(0);
    for (const ex of info.examples) expect(PUBLISHED[ex], `${ex}: a published ${arch} checkpoint`).toBe(arch);
  });
});
