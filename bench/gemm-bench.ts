// GFLOP/s of each GEMM the training step uses, at Qwen3-30B-A3B shapes (or --tiny ones): matmul (bf16 weights),
// qmatmul (4-bit), the routed experts' gate/up and down (bf16). Where an op exposes its tilings (matmulVariants /
// forceMatmulTiling, expertsVariants / forceExpertsTiling), every variant is timed; else the op as it is.
// Time: wall time of `reps` launches submitted back to back, after one warm-up, synced (gpuSync) before and after.
// Build: node scripts/build-cli.mjs bench/gemm-bench.ts dist/cli/gemm-bench.mjs && node dist/cli/gemm-bench.mjs [--tiny] [--reps N] [--tokens M]
// Prints one JSON line per measurement as it finishes.
import { nodeGpu } from '../src/node/gpu.ts';
import type { GpuContext } from '../src/engine/gpu/device.ts';
import { Encoder } from '../src/engine/gpu/encoder.ts';
import { createBuffer, gpuSync, writeBuffer } from '../src/engine/gpu/buffers.ts';
import * as mm from '../src/engine/ops/matmul.ts';
import * as ex from '../src/engine/ops/experts.ts';
import { qmatmulForward } from '../src/engine/ops/qmatmul.ts';
import { moeRoute } from '../src/engine/ops/moe_route.ts';
import { quantLayout } from '../src/engine/quant/format.ts';

const args = process.argv.slice(2);
const opt = (n: string) => (args.includes(n) ? args[args.indexOf(n) + 1] : undefined);
const tiny = args.includes('--tiny');
const reps = Number(opt('--reps') ?? (tiny ? 1 : 10));
const M = Number(opt('--tokens') ?? (tiny ? 16 : 1024));
const moe = tiny ? { H: 64, E: 8, K: 2, IE: 32 } : { H: 2048, E: 128, K: 8, IE: 768 };
const dense = tiny
  ? [{ name: 'q_proj', K: 64, N: 128 }, { name: 'lm_head', K: 64, N: 512 }]
  : [{ name: 'q_proj 2048->4096', K: 2048, N: 4096 }, { name: 'o_proj 4096->2048', K: 4096, N: 2048 }, { name: 'lm_head 2048->151936', K: 2048, N: 151936 }];
const G = 64;

type Variant<T> = { name: string; tiling: T };
/** An op's registry of tilings, when its module has one; else the op's own choice, as one unnamed variant. */
function registry<T>(mod: object, list: string, force: string, gpu: GpuContext): { variants: Variant<T | null>[]; force: (t: T | null) => void } {
  const m = mod as Record<string, unknown>;
  const l = m[list], f = m[force];
  if (typeof l !== 'function' || typeof f !== 'function') return { variants: [{ name: 'default', tiling: null }], force: () => {} };
  return { variants: (l as (g: GpuContext) => Variant<T>[])(gpu), force: (t) => (f as (t: T | null, strict?: boolean) => void)(t, true) };
}

function buf(gpu: GpuContext, bytes: number, fill?: (a: Uint32Array) => void): GPUBuffer {
  const b = createBuffer(gpu, { label: 'gemm-bench', size: Math.max(16, bytes) });
  if (fill) {
    const a = new Uint32Array(b.size / 4);
    fill(a);
    writeBuffer(gpu, b, 0, a);
  }
  return b;
}
/** f32 words of small random values (exponent kept well inside range). */
const smallF32 = (a: Uint32Array) => a.forEach((_, i) => (a[i] = 0x3c000000 | ((i * 2654435761) >>> 9)));
/** bf16 pairs of small random values. */
const smallBf16 = (a: Uint32Array) => a.forEach((_, i) => (a[i] = 0x3c003c00 | (((i * 2654435761) >>> 25) * 0x10001)));

async function time(gpu: GpuContext, record: (enc: Encoder) => void): Promise<number> {
  const warm = new Encoder(gpu, 'gemm-bench');
  record(warm);
  warm.submit();
  await gpuSync(gpu);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const enc = new Encoder(gpu, 'gemm-bench');
    record(enc);
    enc.submit();
  }
  await gpuSync(gpu);
  return (performance.now() - t0) / 1000 / reps;
}

function emit(r: Record<string, unknown>, flops: number, sec: number): void {
  console.log(JSON.stringify({ ...r, ms: +(sec * 1e3).toFixed(4), gflops: +(flops / sec / 1e9).toPrecision(4), timing: 'wall, back-to-back launches' }));
}

const gpu = await nodeGpu();
console.log(JSON.stringify({ adapter: gpu.info.description || gpu.info.device, cpu_adapter: gpu.info.cpu, subgroups: gpu.hasSubgroups, tiny, M, reps }));

const mmReg = registry<unknown>(mm, 'matmulVariants', 'forceMatmulTiling', gpu);
for (const s of dense) {
  const x = buf(gpu, M * s.K * 4, smallF32), w = buf(gpu, (s.N * s.K * 2 + 3) & ~3, smallBf16), y = buf(gpu, M * s.N * 4);
  for (const v of mmReg.variants) {
    mmReg.force(v.tiling);
    emit({ op: 'matmul', variant: v.name, shape: s.name, M, N: s.N, K: s.K, w: 'bf16' }, 2 * M * s.N * s.K, await time(gpu, (enc) => mm.matmulForward(enc, y, x, w, null, { M, N: s.N, K: s.K, wDtype: 'bf16' })));
  }
  mmReg.force(null);
  const L = quantLayout(s.N, s.K, G);
  const q = buf(gpu, L.qWords * 4, (a) => a.forEach((_, i) => (a[i] = (i * 2654435761) >>> 0))), sz = buf(gpu, L.groups * 4, smallF32);
  emit({ op: 'qmatmul', variant: 'default', shape: s.name, M, N: s.N, K: s.K, w: 'q4', G }, 2 * M * s.N * s.K, await time(gpu, (enc) => qmatmulForward(enc, y, x, q, sz, { M, N: s.N, K: s.K, G })));
  for (const b of [x, w, y, q, sz]) b.destroy();
}

// routed experts: T tokens, K experts each, rows sorted by expert (moe_route), bf16 weights
const { H, E, K, IE } = moe;
const T = M, R = T * K;
const d: ex.ExpertsDims = { T, H, E, K, IE, wDtype: 'bf16' };
const x = buf(gpu, T * H * 4, smallF32);
const w = { gate: buf(gpu, E * IE * H * 2, smallBf16), up: buf(gpu, E * IE * H * 2, smallBf16), down: buf(gpu, E * H * IE * 2, smallBf16) };
const route = { offsets: buf(gpu, (E + 1) * 4), slot: buf(gpu, R * 4), rowPair: buf(gpu, R * 4), tiles: buf(gpu, 16 * ex.maxTilesOf(d)) };
const topIdx = buf(gpu, R * 4, (a) => a.forEach((_, i) => (a[i] = (Math.floor(i / K) * 7 + (i % K) * 13) % E))); // K distinct experts a token (13k mod E distinct for k < K)
const enc = new Encoder(gpu, 'gemm-bench.route');
moeRoute(enc, buf(gpu, E * 4), route.offsets, route.slot, route.rowPair, route.tiles, topIdx, { T, K, E, tileM: ex.EXPERT_TILE_M });
enc.submit();
const s = { G: buf(gpu, R * IE * 4), U: buf(gpu, R * IE * 4), A: buf(gpu, R * IE * 4), Y: buf(gpu, R * H * 4) };
const exReg = registry<unknown>(ex, 'expertsVariants', 'forceExpertsTiling', gpu);
const gemm = 2 * R * IE * H;
for (const v of exReg.variants) {
  exReg.force(v.tiling);
  const shape = `T=${T} H=${H} E=${E} K=${K} IE=${IE}`;
  emit({ op: 'experts.gate_up', variant: v.name, shape, w: 'bf16' }, 2 * gemm, await time(gpu, (e) => ex.expertsGateUp(e, s, x, w, route, d)));
  emit({ op: 'experts.down', variant: v.name, shape, w: 'bf16' }, gemm, await time(gpu, (e) => ex.expertsDown(e, s.Y, s.A, w, route, d)));
}
exReg.force(null);
process.exit(0);
