// Contract: every family adapter (src/engine/model/families) is complete and tested: a fixture under test/fixtures/<arch>/
// (config.json of that model_type, model.safetensors, reference.safetensors with transformers' answers, meta.json) whose
// tensor names the spec predicts exactly, the GPU parity test iterating the adapter list, and a registry row.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { FAMILIES } from '../../../src/engine/model/families/index.ts';
import { ARCHITECTURES, archInfo, familyAdapter } from '../../../src/engine/model/registry.ts';
import { allTensors } from '../../../src/engine/model/tensors.ts';
import type { ArchName } from '../../../src/engine/model/spec.ts';
import { here, loadJsonFile, readSafetensorsShapes } from './load.ts';

const fixture = (arch: string, file = ''): string => here(`../../fixtures/${arch}/${file}`);
const PARITY_TEST = here('../../gpu/parity.test.ts');

describe('family adapters', () => {
  it('have distinct model types, all in the registry in adapter order', () => {
    const archs = FAMILIES.map((f) => f.arch);
    expect(new Set(archs).size).toBe(archs.length);
    expect(ARCHITECTURES.map((a) => a.arch)).toEqual(archs);
  });

  it('are all covered by the GPU parity test, which iterates the adapter list (no hand-written list)', () => {
    const src = readFileSync(PARITY_TEST, 'utf8');
    expect(src).toMatch(/import \{ FAMILIES \} from '..\/..\/src\/engine\/model\/families\/index\.ts'/);
    expect(src).toMatch(/describe\.each\(ARCHS\)/);
    expect(src).toMatch(/const ARCHS = FAMILIES\.map\(\(f\) => f\.arch\)/);
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

  it('has registry info for the app', () => {
    const a = familyAdapter(arch as ArchName);
    const info = archInfo(arch as ArchName);
    expect(info.displayName).toBe(a.displayName);
    expect(info.summary.length).toBeGreaterThan(10);
    expect(info.examples.length).toBeGreaterThan(0);
    for (const ex of info.examples) expect(ex).toMatch(/^[\w.-]+\/[\w.-]+$/);
  });
});
