// experts with 4-bit weights (quant/FORMAT.md): the fused-dequantize GEMMs (gate_up, down, backward_act,
// backward_input) vs the float64 oracle run on the CPU-dequantized weights. Gate and up share one buffer behind a
// leading row, their (scale, zero) table at an odd word offset; H = 80 in groups of 32 has a short last group.
import { describe, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/experts.ts';
import * as ref from '../../../src/engine/ref/experts.ts';
import * as route from '../../../src/engine/ops/moe_route.ts';
import type { ExpertsDims } from '../../../src/engine/ops/experts.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { cpuRoute, q4Tensor, randomRouting } from '../../helpers/experts-data.ts';

const G = 32;
const T = 70, H = 80, E = 6, K = 3, IE = 24;
const R = T * K;

// gate/up: 1 leading row, E*IE gate rows, E*IE up rows of H. down: 2 leading rows, E*H rows of IE.
const gu = q4Tensor(1 + 2 * E * IE, H, 11, 5, G);
const dn = q4Tensor(2 + E * H, IE, 12, 3, G);
const offsets = { gateOffset: H, upOffset: (1 + E * IE) * H, downOffset: 2 * IE };
const dQ4: ExpertsDims = { T, H, E, K, IE, wDtype: 'q4', groupSize: G, ...offsets, gateSz: gu.szAt, upSz: gu.szAt, downSz: dn.szAt };
const dRef: ExpertsDims = { T, H, E, K, IE, wDtype: 'f32', ...offsets };
const wRef = { gate: gu.values, up: gu.values, down: dn.values };

const x = randn(T * H, 21);
const topW = randn(T * K, 22).map((v) => 0.2 + Math.abs(v));
const dOut = randn(T * H, 23);
const topIdx = randomRouting(T, K, E, 24, 4);

const tilings: (gpuOp.ExpertsTiling | null)[] = [null, { NX: 4, BK: 8 }, { NX: 32, BK: 16 }];   // adapter, narrow, wide (large GPUs)

describe('experts, 4-bit weights', () => {
  for (const t of tilings) {
    it(`forward, backward and the |dW| importance sums match the oracle on the dequantized weights (${t ? `NX ${t.NX} BK ${t.BK}` : 'adapter tiling'})`, async () => {
      gpuOp.forceExpertsTiling(t);
      try {
        const gpu = await testGpu();
        const rd = { T, K, E, tileM: gpuOp.EXPERT_TILE_M };
        const rt = {
          counts: poisoned(gpu, E), offsets: poisoned(gpu, E + 1), slot: poisoned(gpu, R), rowPair: poisoned(gpu, R),
          tiles: poisoned(gpu, 4 * route.moeRouteMaxTiles(rd)),
        };
        const guB = u32Buffer(gpu, gu.words), dnB = u32Buffer(gpu, dn.words);
        const w = { gate: guB, up: guB, down: dnB };
        const xb = f32Buffer(gpu, x), tw = f32Buffer(gpu, topW);
        const out = poisoned(gpu, T * H);
        const s = { G: poisoned(gpu, R * IE), U: poisoned(gpu, R * IE), A: poisoned(gpu, R * IE), Y: poisoned(gpu, R * H) };
        const g = { dY: poisoned(gpu, R * H), dG: poisoned(gpu, R * IE), dU: poisoned(gpu, R * IE), dXr: poisoned(gpu, R * H) };
        const dx = poisoned(gpu, T * H), dTopW = poisoned(gpu, R);
        await run(gpu, (enc) => {
          route.moeRoute(enc, rt.counts, rt.offsets, rt.slot, rt.rowPair, rt.tiles, u32Buffer(gpu, topIdx), rd);
          gpuOp.expertsForward(enc, out, s, xb, w, tw, rt, dQ4);
        });
        const outY = await readF32(gpu, s.Y);
        await run(gpu, (enc) => gpuOp.expertsBackward(enc, dx, dTopW, g, f32Buffer(gpu, dOut), w, tw, s, rt, dQ4));

        const crt = cpuRoute(topIdx, rd);
        const rs: ref.RefSaved = { G: new Float64Array(R * IE), U: new Float64Array(R * IE), A: new Float64Array(R * IE), Y: new Float64Array(R * H) };
        const want = new Float64Array(T * H);
        ref.expertsForward(want, rs, x, wRef, topW, crt, dRef);
        const rg: ref.RefGrads = { dY: new Float64Array(R * H), dG: new Float64Array(R * IE), dU: new Float64Array(R * IE), dXr: new Float64Array(R * H) };
        const dxr = new Float64Array(T * H), dtr = new Float64Array(R);
        ref.expertsBackward(dxr, dtr, rg, dOut, wRef, topW, rs, crt, dRef);

        expectClose(await readF32(gpu, s.G), rs.G, 1e-5, 1e-4, 'G');
        expectClose(await readF32(gpu, s.U), rs.U, 1e-5, 1e-4, 'U');
        expectClose(outY, rs.Y, 1e-5, 1e-4, 'Y');
        expectClose(await readF32(gpu, out), want, 1e-5, 1e-4, 'out');
        expectClose(await readF32(gpu, g.dG), rg.dG, 1e-5, 1e-4, 'dG');
        expectClose(await readF32(gpu, g.dU), rg.dU, 1e-5, 1e-4, 'dU');
        expectClose(await readF32(gpu, dx), dxr, 1e-5, 1e-4, 'dx');
        expectClose(await readF32(gpu, dTopW), dtr, 1e-4, 1e-4, 'dTopW');

        // importance mode of the dense weight grads: out += |grad| (the trainer's importance sums)
        const nW = E * IE * H;
        const w0 = { gate: randn(nW, 31).map(Math.abs), up: randn(nW, 32).map(Math.abs), down: randn(nW, 33).map(Math.abs) };
        const dW = { gate: f32Buffer(gpu, w0.gate), up: f32Buffer(gpu, w0.up), down: f32Buffer(gpu, w0.down) };
        await run(gpu, (enc) => gpuOp.expertsBackwardWeights(enc, dW, xb, s, g, rt, dQ4, 'abs'));
        const dWr = { gate: new Float64Array(nW), up: new Float64Array(nW), down: new Float64Array(nW) };
        ref.expertsBackwardWeights(dWr, x, rs, rg, crt, dRef);
        for (const k of ['gate', 'up', 'down'] as const) {
          expectClose(await readF32(gpu, dW[k]), dWr[k].map((v, i) => w0[k][i]! + Math.abs(v)), 1e-5, 1e-4, `|d${k}| added`);
        }
      } finally {
        gpuOp.forceExpertsTiling(null);
      }
    });
  }
});
