// experts: grouped SwiGLU forward/backward and dense weight grads, GPU vs the float64 oracle (f32 and bf16 weights at
// odd element offsets, experts spanning several row tiles, an unused expert); oracle backward vs finite differences.
import { describe, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/experts.ts';
import * as ref from '../../../src/engine/ref/experts.ts';
import * as route from '../../../src/engine/ops/moe_route.ts';
import type { ExpertsDims } from '../../../src/engine/ops/experts.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { cpuRoute, packBf16, randomRouting, roundBf16 } from '../../helpers/experts-data.ts';

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

function refForward(d: ExpertsDims, inp: ReturnType<typeof makeInputs>, rt: ReturnType<typeof cpuRoute>) {
  const R = d.T * d.K;
  const s: ref.RefSaved = { G: new Float64Array(R * d.IE), U: new Float64Array(R * d.IE), A: new Float64Array(R * d.IE), Y: new Float64Array(R * d.H) };
  const out = new Float64Array(d.T * d.H);
  ref.expertsForward(out, s, inp.x, inp.w, inp.topW, rt, d);
  return { out, s };
}

describe('experts', () => {
  for (const { name, d } of cases) {
    const R = d.T * d.K;
    const inp = makeInputs(d, 100 + d.T);
    const dOut = randn(d.T * d.H, 200 + d.T);

    it(`forward matches the oracle (${name})`, async () => {
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
    });
  }
});
