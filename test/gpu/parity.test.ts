// End to end against transformers, for every family adapter (src/engine/model/families): our forward pass and every weight's
// gradient on the family's fixture (test/fixtures/<arch>) within rel_err 1e-3, through the same code path as `usaf parity`.
// A new adapter is picked up here; test/unit/model/families.test.ts fails when it has no fixture.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { runParity } from '../../src/cli/commands/parity.ts';
import { readSpec } from '../../src/cli/load-model.ts';
import { FAMILIES } from '../../src/engine/model/families/index.ts';

const TOL = 1e-3;
const ARCHS = FAMILIES.map((f) => f.arch);

describe.each(ARCHS)('%s fixture vs transformers', (arch) => {
  it('parity --grads --all-grads --train-from 0: hidden states, MLP inputs, router logits, logits, loss, every gradient', async () => {
    const fix = `test/fixtures/${arch}`;
    const meta = JSON.parse(await readFile(`${fix}/meta.json`, 'utf8')) as { n_grad_tensors: number };
    const spec = await readSpec(fix);
    expect(spec.arch).toBe(arch);
    const r = await runParity(fix, `${fix}/reference.safetensors`, { tol: TOL, trainFrom: 0, grads: true, allGrads: true });
    const names = Object.keys(r.errors);
    const count = (re: RegExp) => names.filter((n) => re.test(n)).length;
    expect(count(/^hidden\./)).toBe(spec.numLayers + 1);
    expect(count(/^mlp_input\./)).toBe(spec.numLayers);
    expect(count(/^router_logits\./)).toBe(spec.layers.filter((l) => l.mlp === 'moe').length);
    expect(names).toContain('logits');
    expect(names).toContain('loss');
    expect(count(/^grad\./)).toBe(meta.n_grad_tensors);
    const bad = Object.entries(r.errors).filter(([, e]) => !(e <= TOL));
    expect(bad, `over ${TOL}: ${bad.map(([n, e]) => `${n} ${e}`).join(', ')}`).toEqual([]);
    expect(r.ok).toBe(true);
  });
});

describe('parity with transformers (qwen3_moe fixture)', () => {
  const FIX = 'test/fixtures/qwen3_moe';

  it('forward only: every reference tensor within 1e-3', async () => {
    const r = await runParity(FIX, `${FIX}/reference.safetensors`, { tol: TOL });
    const names = Object.keys(r.errors);
    expect(names).toContain('logits');
    expect(names).toContain('loss');
    expect(names.filter((n) => n.startsWith('hidden.')).length).toBe(5);
    expect(names.filter((n) => n.startsWith('router_logits.')).length).toBe(4);
    for (const [name, e] of Object.entries(r.errors)) expect(e, name).toBeLessThanOrEqual(TOL);
    expect(r.ok).toBe(true);
  });

  it('gradients with the top 2 layers trained: expert and router grads of layers 2-3 only', async () => {
    const r = await runParity(FIX, `${FIX}/reference.safetensors`, { tol: TOL, trainFrom: 2, grads: true });
    const grads = Object.keys(r.errors).filter((n) => n.startsWith('grad.'));
    // 2 layers x (8 experts x 3 + router)
    expect(grads.length).toBe(50);
    expect(grads.every((n) => /layers\.[23]\./.test(n))).toBe(true);
    expect(r.ok).toBe(true);
  });
});
