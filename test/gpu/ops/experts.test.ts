// experts: grouped SwiGLU forward/backward and dense weight grads, GPU vs the float64 oracle (f32 and bf16 weights at
// odd element offsets, experts spanning several row tiles, an unused expert, every tiling); oracle backward vs finite differences.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/experts.ts';
import * as ref from '../../../src/engine/ref/experts.ts';
import * as route from '../../../src/engine/ops/moe_route.ts';
import * as sparseOp from '../../../src/engine/ops/sparse_grad.ts';
import * as sparseRef from '../../../src/engine/ref/sparse_grad.ts';
import type { ExpertsDims } from '../../../src/engine/ops/experts.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randn, rng } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { cpuRoute, packBf16, randomRouting, roundBf16 } from '../../helpers/experts-data.ts';
import { withForced } from '../../helpers/forced.ts';

interface Case {
  name: string;
  d: ExpertsDims;
}
const base = { H: 80, E: 6, K: 3, IE: 24 };
const cases: Case[] = [
  { name: 'T=13, f32 weights', d: { ...base, T: 13, wDtype: 'f32' } },
  { name: 'T=70 (several tiles per expert), bf16 at odd offsets', d: { ...base, T: 70, wDtype: 'bf16', gateOffset: 3, upOffset: 3 + 6 * 24 * 80 + 5, downOffset: 1 } },
];

/** Inputs of one case: x, weights (values + GPU words; gate and up share one buffer), topW, routing. */
function makeInputs(d: ExpertsDims, seed: number) {
  const { T, H, E, K, IE } = d;
  const x = randn(T * H, seed);
  const go = d.gateOffset ?? 0, uo = d.upOffset ?? 0, dn = d.downOffset ?? 0;
  const gateUp = new Float32Array(Math.max(go, uo) + E * IE * H);
  gateUp.set(randn(E * IE * H, seed + 1, 0.15), go);
  gateUp.set(randn(E * IE * H, seed + 2, 0.15), uo);
  const down = new Float32Array(dn + E * H * IE);
  down.set(randn(E * H * IE, seed + 3, 0.15), dn);
  const bf = d.wDtype === 'bf16';
  const gu = bf ? roundBf16(gateUp) : gateUp, dw = bf ? roundBf16(down) : down;
  const words = (a: Float32Array) => (bf ? packBf16(a) : new Uint32Array(a.buffer.slice(0)));
  const topIdx = randomRouting(T, K, E, seed + 4, 4);
  const topW = randn(T * K, seed + 5).map((v) => 0.2 + Math.abs(v));
  return { x, w: { gate: gu, up: gu, down: dw }, wWords: { gateUp: words(gu), down: words(dw) }, topIdx, topW };
}

async function gpuRouting(gpu: GpuContext, topIdx: Uint32Array, d: ExpertsDims) {
  const rd = { T: d.T, K: d.K, E: d.E, tileM: gpuOp.EXPERT_TILE_M };
  const R = d.T * d.K;
  const b = {
    counts: poisoned(gpu, d.E), offsets: poisoned(gpu, d.E + 1), slot: poisoned(gpu, R), rowPair: poisoned(gpu, R),
    tiles: poisoned(gpu, 4 * route.moeRouteMaxTiles(rd)),
  };
  await run(gpu, (enc) => route.moeRoute(enc, b.counts, b.offsets, b.slot, b.rowPair, b.tiles, u32Buffer(gpu, topIdx), rd));
  return { gpu: b, cpu: cpuRoute(topIdx, rd) };
}

interface RefInputs {
  x: ArrayLike<number>;
  w: { gate: ArrayLike<number>; up: ArrayLike<number>; down: ArrayLike<number> };
  topW: ArrayLike<number>;
}

function refForward(d: ExpertsDims, inp: RefInputs, rt: ReturnType<typeof cpuRoute>) {
  const R = d.T * d.K;
  const s: ref.RefSaved = { G: new Float64Array(R * d.IE), U: new Float64Array(R * d.IE), A: new Float64Array(R * d.IE), Y: new Float64Array(R * d.H) };
  const out = new Float64Array(d.T * d.H);
  ref.expertsForward(out, s, inp.x, inp.w, inp.topW, rt, d);
  return { out, s };
}

// Every tiling of expertsVariants the adapter would not pick itself (a real GPU: 16 x 4 threads; a large one: 32 x 4),
// and one that splits every output into several column tiles (4 x 4 threads, BK 8), forced so SwiftShader runs them too.
const own = gpuOp.expertsTiling(await testGpu());
const tilings: { name: string; t: gpuOp.ExpertsTiling | null }[] = [
  { name: 'adapter tiling', t: null },
  ...gpuOp.expertsVariants().filter((v) => v.tiling.NX !== own.NX || v.tiling.BK !== own.BK).map((v) => ({ name: v.name, t: v.tiling })),
  { name: 'narrow tiling NX 4 BK 8', t: { NX: 4, BK: 8 } },
];

/** Runs `f` with the launchers forced to tiling t (null: by adapter). */
const withTiling = (t: gpuOp.ExpertsTiling | null, f: () => Promise<void>) => withForced(gpuOp.forceExpertsTiling, t, f);

describe('experts', () => {
  it('the per-vendor table: NX 32 on large GPUs, 16 on other GPUs, 8 on CPUs; the variants cover them', async () => {
    const gpu = await testGpu();
    const as = (vendor: string, cpu: boolean) => gpuOp.expertsTiling({ ...gpu, info: { ...gpu.info, vendor, cpu, description: cpu ? 'SwiftShader' : vendor, device: '', architecture: '', isFallbackAdapter: false } });
    expect([as('nvidia', false).NX, as('apple', false).NX, as('intel', false).NX, as('google', true).NX]).toEqual([32, 32, 16, 8]);
    expect(gpuOp.expertsVariants().map((v) => v.tiling.NX).sort()).toEqual([16, 32, 8]);
    expect(tilings.length).toBe(4);   // the adapter's own, the two it does not pick, the narrow one
  });

  for (const [ci, { name, d }] of cases.entries()) for (const tiling of ci === 0 ? tilings.slice(0, 1) : tilings) {
    const R = d.T * d.K;
    const inp = makeInputs(d, 100 + d.T);
    const dOut = randn(d.T * d.H, 200 + d.T);
    const label = tiling.t ? `${name}, ${tiling.name}` : name;

    it(`forward matches the oracle (${label})`, () => withTiling(tiling.t, async () => {
      const gpu = await testGpu();
      const rt = await gpuRouting(gpu, inp.topIdx, d);
      const gu = u32Buffer(gpu, inp.wWords.gateUp), dn = u32Buffer(gpu, inp.wWords.down);
      const out = poisoned(gpu, d.T * d.H);
      const s = { G: poisoned(gpu, R * d.IE), U: poisoned(gpu, R * d.IE), A: poisoned(gpu, R * d.IE), Y: poisoned(gpu, R * d.H) };
      await run(gpu, (enc) =>
        gpuOp.expertsForward(enc, out, s, f32Buffer(gpu, inp.x), { gate: gu, up: gu, down: dn }, f32Buffer(gpu, inp.topW), rt.gpu, d),
      );
      const want = refForward(d, inp, rt.cpu);
      expectClose(await readF32(gpu, s.G), want.s.G, 1e-5, 1e-4, 'G');
      expectClose(await readF32(gpu, s.U), want.s.U, 1e-5, 1e-4, 'U');
      expectClose(await readF32(gpu, s.A), want.s.A, 1e-5, 1e-4, 'A');
      expectClose(await readF32(gpu, s.Y), want.s.Y, 1e-5, 1e-4, 'Y');
      expectClose(await readF32(gpu, out), want.out, 1e-5, 1e-4, 'out');
    }));

    it(`backward and dense weight grads match the oracle (${label})`, () => withTiling(tiling.t, async () => {
      const gpu = await testGpu();
      const rt = await gpuRouting(gpu, inp.topIdx, d);
      const gu = u32Buffer(gpu, inp.wWords.gateUp), dn = u32Buffer(gpu, inp.wWords.down);
      const w = { gate: gu, up: gu, down: dn };
      const xb = f32Buffer(gpu, inp.x), tw = f32Buffer(gpu, inp.topW);
      const s = { G: poisoned(gpu, R * d.IE), U: poisoned(gpu, R * d.IE), A: poisoned(gpu, R * d.IE), Y: poisoned(gpu, R * d.H) };
      const g = { dY: poisoned(gpu, R * d.H), dG: poisoned(gpu, R * d.IE), dU: poisoned(gpu, R * d.IE), dXr: poisoned(gpu, R * d.H) };
      const dx = poisoned(gpu, d.T * d.H), dTopW = poisoned(gpu, R);
      const nW = d.E * d.IE * d.H;
      const w0 = { gate: randn(nW, 301), up: randn(nW, 302), down: randn(nW, 303) };
      const dW = { gate: f32Buffer(gpu, w0.gate), up: f32Buffer(gpu, w0.up), down: f32Buffer(gpu, w0.down) };
      await run(gpu, (enc) => {
        gpuOp.expertsForward(enc, poisoned(gpu, d.T * d.H), s, xb, w, tw, rt.gpu, d);
        gpuOp.expertsBackward(enc, dx, dTopW, g, f32Buffer(gpu, dOut), w, tw, s, rt.gpu, d);
        gpuOp.expertsBackwardWeights(enc, dW, xb, s, g, rt.gpu, d);
      });
      const f = refForward(d, inp, rt.cpu);
      const rg: ref.RefGrads = { dY: new Float64Array(R * d.H), dG: new Float64Array(R * d.IE), dU: new Float64Array(R * d.IE), dXr: new Float64Array(R * d.H) };
      const dxr = new Float64Array(d.T * d.H), dtr = new Float64Array(R);
      ref.expertsBackward(dxr, dtr, rg, dOut, inp.w, inp.topW, f.s, rt.cpu, d);
      const dWr = { gate: Float64Array.from(w0.gate), up: Float64Array.from(w0.up), down: Float64Array.from(w0.down) };
      ref.expertsBackwardWeights(dWr, inp.x, f.s, rg, rt.cpu, d);
      expectClose(await readF32(gpu, dTopW), dtr, 1e-4, 1e-4, 'dTopW');
      expectClose(await readF32(gpu, g.dY), rg.dY, 1e-5, 1e-4, 'dY');
      expectClose(await readF32(gpu, g.dG), rg.dG, 1e-5, 1e-4, 'dG');
      expectClose(await readF32(gpu, g.dU), rg.dU, 1e-5, 1e-4, 'dU');
      expectClose(await readF32(gpu, dx), dxr, 1e-5, 1e-4, 'dx');
      expectClose(await readF32(gpu, dW.gate), dWr.gate, 1e-5, 1e-4, 'dGate');
      expectClose(await readF32(gpu, dW.up), dWr.up, 1e-5, 1e-4, 'dUp');
      expectClose(await readF32(gpu, dW.down), dWr.down, 1e-5, 1e-4, 'dDown');
    }));
  }

  // The trainer's expert chunks: each chunk's weights in their own small buffer (gate then up, expert e at slot e - e0),
  // the GEMMs run chunk after chunk over the same row buffers; every output must equal the one-chunk run bit for bit.
  it('experts in chunks (weights of experts e0..e1-1 only) give the unchunked results bit for bit, dense weight grads too', async () => {
    const gpu = await testGpu();
    const d: ExpertsDims = { ...base, T: 70, wDtype: 'f32' };
    const R = d.T * d.K, per = d.IE * d.H;
    const inp = makeInputs(d, 170);
    const dOut = randn(d.T * d.H, 171);
    const rt = await gpuRouting(gpu, inp.topIdx, d);
    const xb = f32Buffer(gpu, inp.x), tw = f32Buffer(gpu, inp.topW), dOutB = f32Buffer(gpu, dOut);
    const outputs = () => ({
      out: poisoned(gpu, d.T * d.H), dx: poisoned(gpu, d.T * d.H), dTopW: poisoned(gpu, R),
      s: { G: poisoned(gpu, R * d.IE), U: poisoned(gpu, R * d.IE), A: poisoned(gpu, R * d.IE), Y: poisoned(gpu, R * d.H) },
      g: { dY: poisoned(gpu, R * d.H), dG: poisoned(gpu, R * d.IE), dU: poisoned(gpu, R * d.IE), dXr: poisoned(gpu, R * d.H) },
    });
    const whole = outputs();
    const wAll = { gate: u32Buffer(gpu, inp.wWords.gateUp), up: u32Buffer(gpu, inp.wWords.gateUp), down: u32Buffer(gpu, inp.wWords.down) };
    await run(gpu, (enc) => {
      gpuOp.expertsForward(enc, whole.out, whole.s, xb, wAll, tw, rt.gpu, d);
      gpuOp.expertsBackward(enc, whole.dx, whole.dTopW, whole.g, dOutB, wAll, tw, whole.s, rt.gpu, d);
    });
    const chunks: [number, number][] = [[0, 2], [2, 5], [5, 6]];
    const Ec = 3; // scratch capacity (the largest chunk)
    const gu = new Float32Array(inp.wWords.gateUp.buffer), dn = new Float32Array(inp.wWords.down.buffer);
    const parts = chunks.map(([e0, e1]) => {
      const g = new Float32Array(2 * Ec * per).fill(NaN);
      g.set(gu.subarray(e0 * per, e1 * per), 0);
      g.set(gu.subarray(e0 * per, e1 * per), Ec * per); // makeInputs: gate and up are the same values (offsets 0)
      const b = f32Buffer(gpu, g);
      return { w: { gate: b, up: b, down: f32Buffer(gpu, dn.slice(e0 * per, e1 * per)) }, dc: { ...d, upOffset: Ec * per, experts: [e0, e1] as [number, number] } };
    });
    const c = outputs();
    await run(gpu, (enc) => {
      for (const { w, dc } of parts) {
        gpuOp.expertsGateUp(enc, c.s, xb, w, rt.gpu, dc);
        gpuOp.expertsDown(enc, c.s.Y, c.s.A, w, rt.gpu, dc);
      }
      gpuOp.expertsCombine(enc, c.out, c.s.Y, rt.gpu.slot, tw, d.T, d.H, d.K);
      gpuOp.expertsBackwardCombine(enc, c.dTopW, c.g.dY, dOutB, c.s.Y, tw, rt.gpu, d);
      for (const { w, dc } of parts) {
        gpuOp.expertsBackwardAct(enc, c.g.dG, c.g.dU, c.g.dY, w, c.s.G, c.s.U, rt.gpu, dc);
        gpuOp.expertsBackwardInput(enc, c.g.dXr, c.g.dG, c.g.dU, w, rt.gpu, dc);
      }
      gpuOp.expertsCombine(enc, c.dx, c.g.dXr, rt.gpu.slot, null, d.T, d.H, d.K);
    });
    const same = async (a: GPUBuffer, b: GPUBuffer, what: string) => {
      const x = await readF32(gpu, a), y = await readF32(gpu, b);
      expect(x.some(Number.isNaN), what).toBe(false);
      expect(Buffer.from(y.buffer).equals(Buffer.from(x.buffer)), what).toBe(true);
    };
    // dense weight gradients of each chunk's experts only (slot e - e0) = the chunk's slice of the whole layer's
    const nW = d.E * per;
    const full = { gate: poisoned(gpu, nW), up: poisoned(gpu, nW), down: poisoned(gpu, nW) };
    const byChunk = chunks.map(([e0, e1]) => ({ gate: poisoned(gpu, (e1 - e0) * per), up: poisoned(gpu, (e1 - e0) * per), down: poisoned(gpu, (e1 - e0) * per) }));
    await run(gpu, (enc) => {
      gpuOp.expertsBackwardWeights(enc, full, xb, whole.s, whole.g, rt.gpu, d, false);
      chunks.forEach((experts, i) => gpuOp.expertsBackwardWeights(enc, byChunk[i]!, xb, whole.s, whole.g, rt.gpu, { ...d, experts }, false));
    });
    for (const k of ['gate', 'up', 'down'] as const) {
      const all = new Uint32Array((await readF32(gpu, full[k])).buffer);
      for (const [i, [e0, e1]] of chunks.entries()) {
        const part = new Uint32Array((await readF32(gpu, byChunk[i]![k])).buffer);
        expect(Array.from(part), `d${k} experts ${e0}..${e1}`).toEqual(Array.from(all.subarray(e0 * per, e1 * per)));
      }
    }
    for (const k of ['G', 'U', 'A', 'Y'] as const) await same(whole.s[k], c.s[k], k);
    for (const k of ['dY', 'dG', 'dU', 'dXr'] as const) await same(whole.g[k], c.g[k], k);
    await same(whole.out, c.out, 'out');
    await same(whole.dx, c.dx, 'dx');
    await same(whole.dTopW, c.dTopW, 'dTopW');
  });

  // sparse_grad's fast path (a workgroup of entries in one expert shares the staged row sources, WG rows at a time)
  // needs dense selections and experts with more rows than a workgroup; test/gpu/ops/sparse_grad.test.ts has the rest.
  it('sparse_grad at a dense selection, experts over several row chunks, matches the oracle', async () => {
    const gpu = await testGpu();
    const d = { T: 150, H: 80, E: 6, K: 3, IE: 24 };
    const R = d.T * d.K, nW = d.E * d.IE * d.H;
    const rt = cpuRoute(randomRouting(d.T, d.K, d.E, 51, 4), { ...d, tileM: gpuOp.EXPERT_TILE_M });
    expect(Math.max(...Array.from({ length: d.E }, (_, e) => rt.offsets[e + 1]! - rt.offsets[e]!))).toBeGreaterThan(2 * 64);
    const pick = (size: number, seed: number) => {
      const r = rng(seed);
      return Uint32Array.from({ length: size }, (_, i) => i).filter(() => r() < 0.3);
    };
    const idxG = pick(2 * nW, 52), idxD = pick(nW, 53);
    const x = randn(d.T * d.H, 54), dG = randn(R * d.IE, 55), dU = randn(R * d.IE, 56), dY = randn(R * d.H, 57), A = randn(R * d.IE, 58);
    const g0 = randn(idxG.length, 59), d0 = randn(idxD.length, 60);
    const gradG = f32Buffer(gpu, g0), gradD = f32Buffer(gpu, d0);
    const rg = { offsets: u32Buffer(gpu, rt.offsets), rowPair: u32Buffer(gpu, rt.rowPair) };
    await run(gpu, (enc) => {
      sparseOp.sparseGradGateUp(enc, gradG, u32Buffer(gpu, idxG), f32Buffer(gpu, dG), f32Buffer(gpu, dU), f32Buffer(gpu, x), rg, idxG.length, d, true);
      sparseOp.sparseGradDown(enc, gradD, u32Buffer(gpu, idxD), f32Buffer(gpu, dY), f32Buffer(gpu, A), rg, idxD.length, d, true);
    });
    const wantG = Float64Array.from(g0), wantD = Float64Array.from(d0);
    sparseRef.sparseGradGateUp(wantG, idxG, dG, dU, x, rt, idxG.length, d, true);
    sparseRef.sparseGradDown(wantD, idxD, dY, A, rt, idxD.length, d, true);
    expectClose(await readF32(gpu, gradG), wantG, 1e-5, 1e-4, 'gradG');
    expectClose(await readF32(gpu, gradD), wantD, 1e-5, 1e-4, 'gradD');
  });

  it('oracle backward agrees with finite differences', () => {
    const d: ExpertsDims = { T: 4, H: 5, E: 3, K: 2, IE: 4, wDtype: 'f32', gateOffset: 2, upOffset: 1, downOffset: 3 };
    const R = d.T * d.K;
    const inp = makeInputs(d, 7);
    const rt = cpuRoute(inp.topIdx, { T: d.T, K: d.K, E: d.E, tileM: 2 });
    const g0 = Float64Array.from(randn(d.T * d.H, 8));
    const gate = Float64Array.from(inp.w.gate), up = Float64Array.from(randn(inp.w.up.length, 9, 0.5)), down = Float64Array.from(inp.w.down);
    const x = Float64Array.from(inp.x), topW = Float64Array.from(inp.topW);
    const loss = () => {
      const f = refForward(d, { ...inp, x, topW, w: { gate, up, down } }, rt);
      return f.out.reduce((a, v, i) => a + v * g0[i]!, 0);
    };
    const f = refForward(d, { ...inp, x, topW, w: { gate, up, down } }, rt);
    const rg: ref.RefGrads = { dY: new Float64Array(R * d.H), dG: new Float64Array(R * d.IE), dU: new Float64Array(R * d.IE), dXr: new Float64Array(R * d.H) };
    const dx = new Float64Array(d.T * d.H), dTopW = new Float64Array(R);
    ref.expertsBackward(dx, dTopW, rg, g0, { gate, up, down }, topW, f.s, rt, d);
    const n = d.E * d.IE * d.H;
    const dW = { gate: new Float64Array(n), up: new Float64Array(n), down: new Float64Array(n) };
    ref.expertsBackwardWeights(dW, x, f.s, rg, rt, d);
    const tol = (got: number, arr: Float64Array, i: number, what: string) => expectClose([got], [finiteDiff(() => loss(), arr, i)], 1e-7, 1e-5, what);
    for (const i of [0, 3, 7, 19]) tol(dx[i]!, x, i, `dx[${i}]`);
    for (const i of [0, 5, 7]) tol(dTopW[i]!, topW, i, `dTopW[${i}]`);
    for (const i of [0, 13, 41, n - 1]) {
      tol(dW.gate[i]!, gate, 2 + i, `dGate[${i}]`);
      tol(dW.up[i]!, up, 1 + i, `dUp[${i}]`);
      tol(dW.down[i]!, down, 3 + i, `dDown[${i}]`);
    }
  });
});
