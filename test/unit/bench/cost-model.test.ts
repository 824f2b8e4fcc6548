// The cost model (usaf bench --cost): a training step of a 2-layer model on the counting device, its FLOPs per kernel
// checked against hand arithmetic from the model's dimensions (written here, not taken from the launchers).
import { describe, expect, it } from 'vitest';
import { costJson, costModel, groupBy, ROOFLINES, rooflineOf } from '../../../src/cli/cost-bench.ts';
import { syntheticSpec, SYNTHETIC_CONFIGS } from '../../../src/cli/synthetic.ts';
import { activeCount } from '../../../src/engine/train/schedule.ts';
import type { CountSnapshot } from '../../../src/engine/gpu/cost.ts';

const flopsOf = (c: CountSnapshot, phase: string, kernels: string[]) =>
  [...c.kernels].filter(([k]) => {
    const [p, name] = k.split('\t');
    return p === phase && kernels.includes(name!);
  }).reduce((a, [, t]) => a + t.flops, 0);

describe('cost model', () => {
  it('FLOPs of two trained layers equal the hand arithmetic of their GEMMs and attention; the lower one has no attention backward', async () => {
    const cfg = SYNTHETIC_CONFIGS.demo!;
    const H = cfg.hidden_size as number, IE = cfg.moe_intermediate_size as number, E = cfg.num_experts as number, K = cfg.num_experts_per_tok as number;
    const NH = cfg.num_attention_heads as number, NKV = cfg.num_key_value_heads as number, D = cfg.head_dim as number, V = cfg.vocab_size as number;
    const B = 2, S = 24, T = B * S;
    const spec = await syntheticSpec('demo', 2);
    const r = await costModel(spec, 'demo', ROOFLINES.h100!, { microbatch: B, seq: S, groupSize: 128 });
    const c = r.normal;
    expect(r.uncosted).toEqual([]);
    // The lowest trained layer's input gradient feeds nothing (the layers below are frozen): its backward stops at the
    // router's and experts' weight gradients. So in backward: the top layer's input gradients, both layers' weight ones.
    // routed experts: gate, up, down over T*K rows (forward), dA = dY down (both layers), dX = dG gate + dU up (top only)
    // + 4-bit experts (the fused default): each staged weight slice gets its trained entries' Δ added, one add per entry
    // and row tile of its expert (T·K/E rows an expert, as the cost model routes), FRAC 0.005 of each index space, no
    // overlay yet; forward and dA over both layers, dX (the G entries) over the top one
    const tiles = Math.ceil((T * K) / E / 32);
    const kG = activeCount(0.005, 2 * E * IE * H), kD = activeCount(0.005, E * IE * H);
    expect(flopsOf(c, 'forward', ['experts.gate_up', 'experts.down'])).toBe(2 * 2 * T * K * 3 * H * IE + 2 * tiles * (kG + kD));
    expect(flopsOf(c, 'backward', ['experts.backward_act'])).toBe(2 * 2 * T * K * H * IE + 2 * tiles * kD);
    expect(flopsOf(c, 'backward', ['experts.backward_input'])).toBe(2 * T * K * 2 * H * IE + tiles * kG);
    // attention projections q, k, v, o (frozen weights: forward, and the input gradient in backward, top layer only)
    const proj = 2 * T * H * D * (NH + NKV + NKV + NH);
    expect(flopsOf(c, 'forward', ['matmul.forward'])).toBe(2 * proj);
    expect(flopsOf(c, 'backward', ['matmul.backward_input'])).toBe(proj);
    // router: logits forward; dWr (both layers) and dx (top only) backward
    expect(flopsOf(c, 'forward', ['router.matmul'])).toBe(2 * 2 * T * H * E);
    expect(flopsOf(c, 'backward', ['router.matmul'])).toBe(3 * 2 * T * H * E);
    // causal attention: S(S+1)/2 pairs per head and sample; q.k and p.v forward; backward (top layer) recomputes q.k and
    // dO.v in both kernels (dk/dv: + p^T dO, dS^T q; dq: + dS k), then sums the GQA partials of dk/dv (one add a value)
    const pairs = B * NH * ((S * (S + 1)) / 2);
    expect(flopsOf(c, 'forward', ['attention.forward'])).toBe(2 * 2 * pairs * 2 * D);
    expect(flopsOf(c, 'backward', ['attention.backward_dkdv', 'attention.backward_dq'])).toBe(2 * pairs * 7 * D);
    expect(flopsOf(c, 'backward', ['attention.backward_dkdv_sum'])).toBe(T * NH * 2 * D);
    for (const k of ['attention.backward_delta', 'attention.backward_dkdv', 'attention.backward_dkdv_sum', 'attention.backward_dq']) expect(c.kernels.get(`backward\t${k}`)?.dispatches, k).toBe(1);
    // LM head: each logit computed once (h W^T) and dh = dlogits W from them, both in the head phase; head_backward only
    // takes dh through the final norm (no GEMM)
    expect(flopsOf(c, 'head', ['matmul.forward'])).toBe(2 * T * H * V);
    expect(flopsOf(c, 'head', ['matmul.backward_input'])).toBe(2 * T * H * V);
    expect(flopsOf(c, 'head_backward', ['matmul.forward', 'matmul.backward_input'])).toBe(0);
    // the GEMMs and attention are all but a sliver of the step (at these small widths the rest, dequantization's 2 FLOPs
    // a weight (both layers, forward and backward), norms, softmax, SwiGLU, Adam, is ~6 %)
    const gemm = 2 * T * K * H * IE * (2 * 3 + 2 + 1) + 3 * proj + 5 * 2 * T * H * E + 2 * pairs * (4 + 7) * D + 2 * 2 * T * H * V;
    expect(c.flops).toBeGreaterThanOrEqual(gemm);
    expect(c.flops).toBeLessThan(gemm * 1.08);
  });

  it('prints per step counts, phases and an estimate; a reselection step costs more; a bad --device is refused', async () => {
    const spec = await syntheticSpec('demo', 2);
    const r = await costModel(spec, 'demo', ROOFLINES.h200!, { microbatch: 1, seq: 16, groupSize: 128 });
    const j = costJson(r);
    expect(Object.keys(j)).toEqual(['per_step', 'reselect_step', 'phases', 'estimate']);
    expect(Object.keys(j.per_step)).toEqual(['dispatches', 'submits', 'blocking_readbacks', 'flops', 'bytes']);
    expect(j.reselect_step.dispatches).toBeGreaterThan(j.per_step.dispatches);
    expect(j.phases.reselection!.dispatches).toBeGreaterThan(0);
    expect(j.estimate.device).toBe('H200');
    // the estimate is the sum of the step's phases, each dispatch max(FLOPs / peak, bytes / bandwidth): at least the
    // step's bytes over the bandwidth and its FLOPs over the peak
    const floor = Math.max(j.per_step.flops / 67e12, j.per_step.bytes / 4.8e12) * 1e3;
    expect(j.estimate.ms).toBeGreaterThanOrEqual(floor * 0.999);
    expect(j.estimate.ms).toBeLessThanOrEqual((j.per_step.flops / 67e12 + j.per_step.bytes / 4.8e12) * 1e3 * 1.001);
    expect(Math.abs(j.estimate.tok_s - 16 / (j.estimate.ms / 1e3))).toBeLessThanOrEqual(0.5 + 1e-5 * j.estimate.tok_s); // tok/s an integer, ms printed to 6 digits
    const phases = groupBy(r.normal, 'phase');
    expect([...phases.keys()].sort()).toEqual(['backward', 'forward', 'frozen_forward', 'head', 'head_backward', 'optimizer']);
    await expect(rooflineOf('b200')).rejects.toThrow(/--device: "b200"/);
  });
});
