// 4-bit experts with trained entries, no f32 weights: the sparse tables (host), the Δ kernel, and the four grouped GEMMs
// with the table folded in (Δ added to each staged 4-bit slice), each vs the same GEMM on W0 alone plus the float64
// oracle of the Δ part (ref/experts_q4.ts) on the GPU's own inputs, in every tiling (several column tiles, slices of 8
// and 16: entries at slice starts and ends); and the whole forward/backward vs the dense oracle (ref/experts.ts) on the
// current weights W0 + Δ. IE = 40 in groups of 16 has a short last group and a short last slice; some weight rows carry
// many entries, most none; expert 4 gets no rows, the others ragged tiles; outputs poisoned before every write.
import { describe, expect, it } from 'vitest';
import * as ex from '../../../src/engine/ops/experts.ts';
import * as q4 from '../../../src/engine/ops/experts_q4.ts';
import * as ref from '../../../src/engine/ref/experts.ts';
import * as refQ4 from '../../../src/engine/ref/experts_q4.ts';
import * as route from '../../../src/engine/ops/moe_route.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randn, rng } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { cpuRoute, q4Tensor, randomRouting } from '../../helpers/experts-data.ts';

const G = 16;
const T = 40, H = 80, E = 5, K = 2, IE = 40;
const R = T * K;
const per = E * IE * H;
const d: ex.ExpertsDims = { T, H, E, K, IE, wDtype: 'q4', groupSize: G };

/** Disjoint ascending active and overlay sets of [0, numel): dense in a few weight rows (of length L), sparse elsewhere. */
function entries(numel: number, L: number, seed: number) {
  const r = rng(seed);
  const hot = new Set([3, 7, Math.floor(numel / L) - 1]);
  const a: number[] = [], o: number[] = [];
  for (let f = 0; f < numel; f++) {
    const p = hot.has(Math.floor(f / L)) ? 0.6 : 0.04;
    const u = r();
    if (u < p / 2) a.push(f);
    else if (u < p) o.push(f);
  }
  return { active: Uint32Array.from(a), overlay: Uint32Array.from(o) };
}

function upload(gpu: GpuContext, t: q4.SparseTable): q4.SparseTableGpu {
  const { words, ...rest } = t;
  return { tab: u32Buffer(gpu, words), delta: poisoned(gpu, Math.max(1, t.nnz)), t: rest };
}

const gu = q4Tensor(2 * E * IE, H, 11, 3, G);
const dn = q4Tensor(E * H, IE, 12, 3, G);
const eg = entries(2 * per, H, 13), ed = entries(per, IE, 14);
const vals = (w0: Float64Array, idx: Uint32Array, seed: number) => Float32Array.from(randn(idx.length, seed, 0.05), (v, j) => w0[idx[j]!]! + v);
const mG = vals(gu.values, eg.active, 15), oG = vals(gu.values, eg.overlay, 16);
const mD = vals(dn.values, ed.active, 17), oD = vals(dn.values, ed.overlay, 18);
const x = randn(T * H, 21);
const topW = randn(T * K, 22).map((v) => 0.2 + Math.abs(v));
const dOut = randn(T * H, 23);
const topIdx = randomRouting(T, K, E, 24, 4); // expert 4 gets no rows

describe('4-bit experts, trained entries folded into the GEMMs', () => {
  it('tables list every entry once, in row order forward and column order backward', () => {
    const geo = q4.dGeometry(d);
    const t = q4.buildSparseTable(geo, ed.active, ed.overlay);
    expect(t.nnz).toBe(ed.active.length + ed.overlay.length);
    const seen = new Set<number>();
    for (let key = 0; key < geo.blocks * geo.M; key++) {
      // slots: the active (overlay) entries before the row, then those before the entry in the row
      let a = t.words[t.fAct + key]!, o = t.words[t.fPtr + key]! - a;
      for (let j = t.words[t.fPtr + key]!; j < t.words[t.fPtr + key + 1]!; j++) {
        const f = t.flat[j]!;
        const c = t.words[t.cols + j]! & 0xffff;
        expect([Math.floor(f / IE), f % IE]).toEqual([key, c & ~q4.OVERLAY]);
        expect(c & q4.OVERLAY ? ed.overlay[o++] : ed.active[a++]).toBe(f);
        seen.add(f);
      }
    }
    expect(seen.size).toBe(t.nnz);
    let last = -1;
    for (let key = 0; key < geo.blocks * geo.L; key++) {
      for (let j = t.words[t.bPtr + key]!; j < t.words[t.bPtr + key + 1]!; j++) {
        const f = t.flat[t.words[t.bPos + j]!]!;
        const m = t.words[t.cols + j]! >>> 16;
        expect(Math.floor(f / (H * IE)) * IE + (f % IE)).toBe(key);
        expect(Math.floor(f / IE) % H).toBe(m);
        const order = key * H + m;
        expect(order).toBeGreaterThan(last);
        last = order;
      }
    }
    expect(() => q4.buildSparseTable(geo, Uint32Array.of(per), new Uint32Array(0))).toThrow(/outside/);
    expect(() => q4.buildSparseTable({ blocks: 1, M: 2, L: 0x8001 }, new Uint32Array(0), new Uint32Array(0))).toThrow(/16-bit/);
    // 8 bytes per entry: the tables of 1 and 101 entries differ by 100 × 2 words
    expect(q4.sparseTableWords(geo, 101) - q4.sparseTableWords(geo, 1)).toBe(200);
    expect(t.words.length).toBe(q4.sparseTableWords(geo, t.nnz));
    // slice boundaries (BK 8 and 16) carry entries, on both sides
    const ls = Array.from(t.flat, (f) => f % IE);
    for (const l of [0, 7, 8, 15, 16, 31, 32, IE - 1]) expect(ls, `an entry at l = ${l}`).toContain(l);
  });

  it('Δ, then the GEMMs with the table folded in match W0 + the Δ oracle, in every tiling, and the dense products on W0 + Δ', async () => {
    const gpu = await testGpu();
    const rd = { T, K, E, tileM: ex.EXPERT_TILE_M };
    const rt = { counts: poisoned(gpu, E), offsets: poisoned(gpu, E + 1), slot: poisoned(gpu, R), rowPair: poisoned(gpu, R), tiles: poisoned(gpu, 4 * route.moeRouteMaxTiles(rd)) };
    const guB = u32Buffer(gpu, gu.words), dnB = u32Buffer(gpu, dn.words);
    const w = { gate: guB, up: guB, down: dnB };
    const dq: ex.ExpertsDims = { ...d, gateOffset: 0, upOffset: per, downOffset: 0, gateSz: gu.szAt, upSz: gu.szAt, downSz: dn.szAt };
    const tg = upload(gpu, q4.buildSparseTable(q4.gGeometry(d), eg.active, eg.overlay));
    const td = upload(gpu, q4.buildSparseTable(q4.dGeometry(d), ed.active, ed.overlay));
    const xb = f32Buffer(gpu, x), tw = f32Buffer(gpu, topW);
    const s = { G: poisoned(gpu, R * IE), U: poisoned(gpu, R * IE), A: poisoned(gpu, R * IE), Y: poisoned(gpu, R * H) };
    const g = { dY: poisoned(gpu, R * H), dG: poisoned(gpu, R * IE), dU: poisoned(gpu, R * IE), dXr: poisoned(gpu, R * H) };
    const out = poisoned(gpu, T * H), dx = poisoned(gpu, T * H), dTopW = poisoned(gpu, R);
    const read = (b: GPUBuffer) => readF32(gpu, b).then((a) => Float64Array.from(a));

    // Δ in table order
    await run(gpu, (enc) => {
      route.moeRoute(enc, rt.counts, rt.offsets, rt.slot, rt.rowPair, rt.tiles, u32Buffer(gpu, topIdx), rd);
      q4.expertsQ4Delta(enc, tg, f32Buffer(gpu, mG), f32Buffer(gpu, oG), { buf: guB, szWord: gu.szAt, L: H, G });
      q4.expertsQ4Delta(enc, td, f32Buffer(gpu, mD), f32Buffer(gpu, oD), { buf: dnB, szWord: dn.szAt, L: IE, G });
    });
    const DG = refQ4.expertsQ4Delta(2 * per, eg.active, mG, eg.overlay, oG, gu.values);
    const DD = refQ4.expertsQ4Delta(per, ed.active, mD, ed.overlay, oD, dn.values);
    for (const [t, D, name] of [[tg, DG, 'ΔG'], [td, DD, 'ΔD']] as const) {
      const flat = q4.buildSparseTable(t === tg ? q4.gGeometry(d) : q4.dGeometry(d), ...(t === tg ? [eg.active, eg.overlay] as const : [ed.active, ed.overlay] as const)).flat;
      const want = Array.from({ length: t.t.nnz }, (_, j) => D[flat[j]!]!);
      expectClose(await readF32(gpu, t.delta), want, 1e-7, 1e-6, name);
    }

    const crt = cpuRoute(topIdx, rd);
    const tilings = [...ex.expertsVariants().map((v) => v.tiling), { NX: 4, BK: 8 }];
    for (const tiling of tilings) {
      ex.forceExpertsTiling(tiling);
      try {
        const at = `(NX ${tiling.NX} BK ${tiling.BK})`;
        // forward: gate/up on W0 (the GPU's, into s0), then on W0 + Δ (into s): s = s0 + the oracle's Δ part
        const s0 = { G: poisoned(gpu, R * IE), U: poisoned(gpu, R * IE), A: poisoned(gpu, R * IE) };
        const sf = { G: poisoned(gpu, R * IE), U: poisoned(gpu, R * IE), A: poisoned(gpu, R * IE), Y: poisoned(gpu, R * H) };
        await run(gpu, (enc) => {
          ex.expertsGateUp(enc, s0, xb, w, rt, dq);
          ex.expertsGateUp(enc, sf, xb, w, rt, dq, tg);
        });
        const want = { G: await read(s0.G), U: await read(s0.U), A: new Float64Array(R * IE) };
        refQ4.expertsQ4GateUp(want, x, DG, crt, dq);
        expectClose(await readF32(gpu, sf.G), want.G, 1e-5, 1e-4, `G ${at}`);
        expectClose(await readF32(gpu, sf.U), want.U, 1e-5, 1e-4, `U ${at}`);
        expectClose(await readF32(gpu, sf.A), want.A, 1e-5, 1e-4, `A ${at}`);
        const Y0 = poisoned(gpu, R * H);
        await run(gpu, (enc) => {
          ex.expertsDown(enc, Y0, sf.A, w, rt, dq);
          ex.expertsDown(enc, sf.Y, sf.A, w, rt, dq, td);
        });
        const wantY = await read(Y0);
        refQ4.expertsQ4Down(wantY, await read(sf.A), DD, crt, dq);
        expectClose(await readF32(gpu, sf.Y), wantY, 1e-5, 1e-4, `Y ${at}`);

        // backward: act and input likewise (dY from the combine's backward over the fused Y)
        const dY = poisoned(gpu, R * H), dG0 = poisoned(gpu, R * IE), dU0 = poisoned(gpu, R * IE), dG = poisoned(gpu, R * IE), dU = poisoned(gpu, R * IE);
        await run(gpu, (enc) => {
          ex.expertsBackwardCombine(enc, poisoned(gpu, R), dY, f32Buffer(gpu, dOut), sf.Y, tw, rt, dq);
          ex.expertsBackwardAct(enc, dG0, dU0, dY, w, sf.G, sf.U, rt, dq);
          ex.expertsBackwardAct(enc, dG, dU, dY, w, sf.G, sf.U, rt, dq, td);
        });
        const wdG = await read(dG0), wdU = await read(dU0);
        refQ4.expertsQ4BackwardAct(wdG, wdU, await read(dY), await read(sf.G), await read(sf.U), DD, crt, dq);
        expectClose(await readF32(gpu, dG), wdG, 1e-5, 1e-4, `dG ${at}`);
        expectClose(await readF32(gpu, dU), wdU, 1e-5, 1e-4, `dU ${at}`);
        const dXr0 = poisoned(gpu, R * H), dXr = poisoned(gpu, R * H);
        await run(gpu, (enc) => {
          ex.expertsBackwardInput(enc, dXr0, dG, dU, w, rt, dq);
          ex.expertsBackwardInput(enc, dXr, dG, dU, w, rt, dq, tg);
        });
        const wdXr = await read(dXr0);
        refQ4.expertsQ4BackwardInput(wdXr, await read(dG), await read(dU), DG, crt, dq);
        expectClose(await readF32(gpu, dXr), wdXr, 1e-5, 1e-4, `dXr ${at}`);
      } finally {
        ex.forceExpertsTiling(null);
      }
    }

    // the adapter's tiling, start to end: forward and backward on W0 + Δ
    await run(gpu, (enc) => {
      ex.expertsGateUp(enc, s, xb, w, rt, dq, tg);
      ex.expertsDown(enc, s.Y, s.A, w, rt, dq, td);
      ex.expertsCombine(enc, out, s.Y, rt.slot, tw, T, H, K);
      ex.expertsBackwardCombine(enc, dTopW, g.dY, f32Buffer(gpu, dOut), s.Y, tw, rt, dq);
      ex.expertsBackwardAct(enc, g.dG, g.dU, g.dY, w, s.G, s.U, rt, dq, td);
      ex.expertsBackwardInput(enc, g.dXr, g.dG, g.dU, w, rt, dq, tg);
      ex.expertsCombine(enc, dx, g.dXr, rt.slot, null, T, H, K);
    });

    // the whole: dense f64 products on the current weights W0 + Δ
    const cur = { gate: gu.values.map((v, i) => v + DG[i]!).subarray(0, per), up: gu.values.map((v, i) => v + DG[i]!).subarray(per), down: dn.values.map((v, i) => v + DD[i]!) };
    const dRef: ex.ExpertsDims = { T, H, E, K, IE, wDtype: 'f32' };
    const rs: ref.RefSaved = { G: new Float64Array(R * IE), U: new Float64Array(R * IE), A: new Float64Array(R * IE), Y: new Float64Array(R * H) };
    const want = new Float64Array(T * H);
    ref.expertsForward(want, rs, x, cur, topW, crt, dRef);
    const rg: ref.RefGrads = { dY: new Float64Array(R * H), dG: new Float64Array(R * IE), dU: new Float64Array(R * IE), dXr: new Float64Array(R * H) };
    const dxr = new Float64Array(T * H), dtr = new Float64Array(R);
    ref.expertsBackward(dxr, dtr, rg, dOut, cur, topW, rs, crt, dRef);
    expectClose(await readF32(gpu, out), want, 1e-5, 1e-4, 'out on W0 + Δ');
    expectClose(await readF32(gpu, dx), dxr, 1e-5, 1e-4, 'dx on W0 + Δ');
    expect(Math.max(...DG.map(Math.abs))).toBeGreaterThan(0.05); // the correction is not negligible
  });
});
