// Times each routed-expert kernel (and sparse_grad) at the demo model's shapes: wall time per dispatch, synced, best of N.
// Build: node scripts/build-cli.mjs bench/experts-bench.ts .eb.mjs && node .eb.mjs [T,T..] [reps] [--dump dir] [--only k1,k2] [--tiling NX,BK] [--h200]
import { mkdirSync, writeFileSync } from 'node:fs';
import { nodeGpu } from '../src/node/gpu.ts';
import type { GpuContext } from '../src/engine/gpu/device.ts';
import { Encoder } from '../src/engine/gpu/encoder.ts';
import { createBuffer, gpuSync, readF32, writeBuffer } from '../src/engine/gpu/buffers.ts';
import { encodeBf16 } from '../src/engine/io/dtype.ts';
import { moeRoute } from '../src/engine/ops/moe_route.ts';
import * as ex from '../src/engine/ops/experts.ts';
import { sparseGradDown, sparseGradGateUp } from '../src/engine/ops/sparse_grad.ts';

const args = process.argv.slice(2);
const flag = (n: string) => args.includes(n);
const opt = (n: string) => (args.includes(n) ? args[args.indexOf(n) + 1] : undefined);
const pos = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && ['--dump', '--only', '--tiling'].includes(args[i - 1]!)));
const Ts = (pos[0] ?? '256,1024').split(',').map(Number);
const reps = Number(pos[1] ?? 2);
const dumpDir = opt('--dump');
// Demo model (usaf-demo-moe) by default; --h200 uses Qwen3-30B-A3B's expert shapes.
const shape = flag('--h200') ? { H: 2048, E: 128, K: 8, IE: 768 } : { H: 256, E: 16, K: 4, IE: 128 };

let seed = 1;
function rand(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 4294967296;
}
const randn = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * (rand() + rand() + rand() - 1.5) * 2);

function f32(gpu: GpuContext, a: Float32Array | Uint32Array): GPUBuffer {
  const b = createBuffer(gpu, { label: 'bench', size: Math.max(16, a.byteLength) });
  writeBuffer(gpu, b, 0, a);
  return b;
}
const empty = (gpu: GpuContext, n: number) => f32(gpu, new Float32Array(n));
const bf16Words = (a: Float32Array) => new Uint32Array(encodeBf16(a).buffer);

/** topIdx [T, K]: K distinct experts per token, mildly skewed like a trained router. */
function routing(T: number, K: number, E: number): Uint32Array {
  const out = new Uint32Array(T * K);
  for (let t = 0; t < T; t++) {
    const used = new Set<number>();
    for (let k = 0; k < K; k++) {
      let e: number;
      do e = Math.floor(rand() ** 1.3 * E);
      while (used.has(e));
      used.add(e);
      out[t * K + k] = e;
    }
  }
  return out;
}

/** n sorted distinct indices in [0, size). */
function activeSet(size: number, n: number): Uint32Array {
  const s = new Set<number>();
  while (s.size < n) s.add(Math.floor(rand() * size));
  return Uint32Array.from([...s].sort((a, b) => a - b));
}

const gpu = await nodeGpu();
const forced = opt('--tiling')?.split(',').map(Number);
if (forced) ex.forceExpertsTiling({ NX: forced[0]!, BK: forced[1]! });
console.log(`adapter: ${gpu.info.vendor} / ${gpu.info.architecture} / ${gpu.info.description}; tiling ${JSON.stringify(ex.expertsTiling(gpu))}`);

const firstMs: number[] = [];
/** Best wall ms and best process CPU ms (all threads: SwiftShader's workers run in this process) of one synced dispatch. */
async function time(f: (enc: Encoder) => void): Promise<[number, number]> {
  const once = async (): Promise<[number, number]> => {
    await gpuSync(gpu);
    const t0 = performance.now(), c0 = process.cpuUsage();
    const enc = new Encoder(gpu);
    f(enc);
    enc.submit();
    await gpuSync(gpu);
    const c = process.cpuUsage(c0);
    return [performance.now() - t0, (c.user + c.system) / 1000];
  };
  const [first] = await once(); // compile + warm up
  firstMs.push(first);
  let best: [number, number] = [Infinity, Infinity];
  for (let i = 0; i < reps; i++) {
    const [w, c] = await once();
    best = [Math.min(best[0], w), Math.min(best[1], c)];
  }
  return best;
}

for (const T of Ts) {
  const { H, E, K, IE } = shape;
  const R = T * K;
  const d: ex.ExpertsDims = { T, H, E, K, IE, wDtype: 'bf16' };
  const x = f32(gpu, randn(T * H, 1));
  const w = { gate: f32(gpu, bf16Words(randn(E * IE * H, 0.06))), up: f32(gpu, bf16Words(randn(E * IE * H, 0.06))), down: f32(gpu, bf16Words(randn(E * H * IE, 0.09))) };
  const topW = f32(gpu, randn(T * K, 0.5).map((v) => 0.1 + Math.abs(v)));
  const dOut = f32(gpu, randn(T * H, 1));
  const maxTiles = ex.maxTilesOf(d);
  const route = { offsets: empty(gpu, E + 1), slot: empty(gpu, R), rowPair: empty(gpu, R), tiles: empty(gpu, 4 * maxTiles) };
  const counts = empty(gpu, E);
  const run0 = new Encoder(gpu);
  moeRoute(run0, counts, route.offsets, route.slot, route.rowPair, route.tiles, f32(gpu, routing(T, K, E)), { T, K, E, tileM: ex.EXPERT_TILE_M });
  run0.submit();
  const s = { G: empty(gpu, R * IE), U: empty(gpu, R * IE), A: empty(gpu, R * IE), Y: empty(gpu, R * H) };
  const g = { dY: empty(gpu, R * H), dG: empty(gpu, R * IE), dU: empty(gpu, R * IE), dXr: empty(gpu, R * H) };
  const out = empty(gpu, T * H), dx = empty(gpu, T * H), dTopW = empty(gpu, R);
  const nW = E * IE * H;
  const dW = { gate: empty(gpu, nW), up: empty(gpu, nW), down: empty(gpu, nW) };
  const sd = { T, H, E, K, IE };
  const fracs = [0.005, 0.05];
  const sparse = fracs.map((frac) => {
    const idxG = activeSet(2 * nW, Math.round(2 * nW * frac)), idxD = activeSet(nW, Math.round(nW * frac));
    return { frac, idxG: f32(gpu, idxG), nG: idxG.length, gradG: empty(gpu, idxG.length), idxD: f32(gpu, idxD), nD: idxD.length, gradD: empty(gpu, idxD.length) };
  });

  const gemm = 2 * R * IE * H; // flops of one [R, IE] x [IE, H] product
  const rows: [string, number, number, number][] = [];
  const add = async (name: string, flops: number, f: (enc: Encoder) => void) => {
    if (opt('--only') && !opt('--only')!.split(',').some((o) => name.startsWith(o))) return;
    const [ms, cpu] = await time(f);
    rows.push([name, ms, cpu, flops]);
    if (flag('--verbose')) console.log(`  ... ${name} ${ms.toFixed(1)} ms`);
  };
  // Order follows the data flow, so each kernel reads what the previous ones wrote.
  await add('gate_up', 2 * gemm, (enc) => ex.expertsGateUp(enc, s, x, w, route, d));
  await add('down', gemm, (enc) => ex.expertsDown(enc, s.Y, s.A, w, route, d));
  await add('combine', 2 * R * H, (enc) => ex.expertsCombine(enc, out, s.Y, route.slot, topW, T, H, K));
  await add('backward_combine', 3 * R * H, (enc) => ex.expertsBackwardCombine(enc, dTopW, g.dY, dOut, s.Y, topW, route, d));
  await add('backward_act', gemm, (enc) => ex.expertsBackwardAct(enc, g.dG, g.dU, g.dY, w, s.G, s.U, route, d));
  await add('backward_input', 2 * gemm, (enc) => ex.expertsBackwardInput(enc, g.dXr, g.dG, g.dU, w, route, d));
  await add('combine (dx)', R * H, (enc) => ex.expertsCombine(enc, dx, g.dXr, route.slot, null, T, H, K));
  await add('backward_weight (gate+up+down)', 3 * gemm, (enc) => ex.expertsBackwardWeights(enc, dW, x, s, g, route, d, false));
  for (const sp of sparse) {
    const per = R / E; // rows per expert on average
    await add(`sparse_grad ${sp.frac * 100}% (G+D, n=${sp.nG}+${sp.nD})`, 2 * (sp.nG + sp.nD) * per, (enc) => {
      sparseGradGateUp(enc, sp.gradG, sp.idxG, g.dG, g.dU, x, route, sp.nG, sd, false);
      sparseGradDown(enc, sp.gradD, sp.idxD, g.dY, s.A, route, sp.nD, sd, false);
    });
  }
  console.log(`\nT=${T} H=${H} E=${E} K=${K} IE=${IE} (R=${R}, best of ${reps})`);
  console.log(`  ${'kernel'.padEnd(44)} ${'wall ms'.padStart(9)} ${'cpu ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'1st run ms'.padStart(10)}`);
  const firsts = firstMs.splice(0);
  let total = 0, totalCpu = 0;
  for (const [i, [name, ms, cpu, flops]] of rows.entries()) {
    total += ms;
    totalCpu += cpu;
    console.log(`  ${name.padEnd(44)} ${ms.toFixed(1).padStart(9)} ${cpu.toFixed(1).padStart(9)} ${(flops / ms / 1e6).toFixed(3).padStart(8)} ${firsts[i]!.toFixed(0).padStart(10)}`);
  }
  console.log(`  ${'sum'.padEnd(44)} ${total.toFixed(1).padStart(9)} ${totalCpu.toFixed(1).padStart(9)}`);
  if (dumpDir) {
    mkdirSync(dumpDir, { recursive: true });
    const outs: Record<string, GPUBuffer> = { ...s, ...g, out, dx, dTopW, ...Object.fromEntries(Object.entries(dW).map(([k, v]) => [`dW.${k}`, v])) };
    sparse.forEach((sp, i) => Object.assign(outs, { [`sparseG${i}`]: sp.gradG, [`sparseD${i}`]: sp.gradD }));
    for (const [k, b] of Object.entries(outs)) writeFileSync(`${dumpDir}/T${T}.${k}.f32`, await readF32(gpu, b));
  }
}
process.exit(0);
