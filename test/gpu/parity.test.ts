// End to end: our forward pass on the Qwen3-MoE fixture equals transformers' (hidden states, MLP inputs, router logits,
// logits, loss) within rel_err 1e-3, through the same code path as `usaf parity`.
import { describe, expect, it } from 'vitest';
import { runParity } from '../../src/cli/commands/parity.ts';

const FIX = 'test/fixtures/qwen3_moe';

describe('parity with transformers (qwen3_moe fixture)', () => {
  it('forward: every reference tensor within 1e-3', async () => {
    const r = await runParity(FIX, `${FIX}/reference.safetensors`, { tol: 1e-3 });
    const names = Object.keys(r.errors);
    expect(names).toContain('logits');
    expect(names).toContain('loss');
    expect(names.filter((n) => n.startsWith('hidden.')).length).toBe(5);
    expect(names.filter((n) => n.startsWith('router_logits.')).length).toBe(4);
    for (const [name, e] of Object.entries(r.errors)) expect(e, name).toBeLessThanOrEqual(1e-3);
    expect(r.ok).toBe(true);
  });

  it('gradients (--grads --all-grads --train-from 0): every one of the 135 weights within 1e-3', async () => {
    const r = await runParity(FIX, `${FIX}/reference.safetensors`, { tol: 1e-3, trainFrom: 0, grads: true, allGrads: true });
    const grads = Object.keys(r.errors).filter((n) => n.startsWith('grad.'));
    expect(grads.length).toBe(135);
    for (const [name, e] of Object.entries(r.errors)) expect(e, name).toBeLessThanOrEqual(1e-3);
  });

  it('gradients with the top 2 layers trained: expert and router grads of layers 2-3 only', async () => {
    const r = await runParity(FIX, `${FIX}/reference.safetensors`, { tol: 1e-3, trainFrom: 2, grads: true });
    const grads = Object.keys(r.errors).filter((n) => n.startsWith('grad.'));
    // 2 layers x (8 experts x 3 + router)
    expect(grads.length).toBe(50);
    expect(grads.every((n) => /layers\.[23]\./.test(n))).toBe(true);
    expect(r.ok).toBe(true);
  });
});
