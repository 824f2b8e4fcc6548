// GB/s of the copy hosted experts make (quant/expert-slots.ts): one layer's 4-bit gate|up and down buffers from
// host-visible upload buffers (MAP_WRITE | COPY_SRC, written once) into GPU slots, as a step records it; beside it the
// same copy from GPU buffers (device memory bandwidth). Sizes: a Qwen3-30B-A3B and a Qwen3-235B-A22B layer (G 128), or
// a --tiny one. Time: wall time of `reps` copies submitted back to back, after one warm-up, synced before and after.
// Build: node scripts/build-cli.mjs bench/upload-bench.ts dist/cli/upload-bench.mjs && node dist/cli/upload-bench.mjs [--tiny] [--reps N]
// Prints one JSON line per measurement.
import { nodeGpu } from '../src/node/gpu.ts';
import { createBuffer, gpuSync, HOST_KIND } from '../src/engine/gpu/buffers.ts';
import { Encoder } from '../src/engine/gpu/encoder.ts';
import { Usage } from '../src/engine/gpu/usage.ts';
import { q4BufferLayout } from '../src/engine/quant/format.ts';

const args = process.argv.slice(2);
const opt = (n: string) => (args.includes(n) ? args[args.indexOf(n) + 1] : undefined);
const tiny = args.includes('--tiny');
const reps = Number(opt('--reps') ?? (tiny ? 2 : 8));
// (shapes written here: only the demo model travels to a GPU machine)
const models = tiny ? [{ model: 'tiny', E: 16, IE: 64, H: 128 }]
  : [{ model: 'Qwen3-30B-A3B', E: 128, IE: 768, H: 2048 }, { model: 'Qwen3-235B-A22B', E: 128, IE: 1536, H: 4096 }];

const gpu = await nodeGpu();
for (const { model, E, IE, H } of models) {
  // one layer's two 4-bit buffers as quant/format.ts lays them out (q4ExpertLayouts), G 128
  const sizes = [q4BufferLayout(2 * E * IE, H, 128).bytes, q4BufferLayout(E * H, IE, 128).bytes];
  const bytes = sizes.reduce((a, b) => a + b, 0);
  const dst = sizes.map((size) => createBuffer(gpu, { label: 'upload-bench.slot', size, kind: 'weights' }));
  for (const from of ['host-visible', 'gpu'] as const) {
    const src = sizes.map((size) => {
      if (from === 'gpu') return createBuffer(gpu, { label: 'upload-bench.gpu', size, kind: 'weights' });
      const b = createBuffer(gpu, { label: 'upload-bench.host', size, kind: HOST_KIND, usage: Usage.MAP_WRITE | Usage.COPY_SRC, mappedAtCreation: true });
      new Uint8Array(b.getMappedRange()).fill(7);
      b.unmap();
      return b;
    });
    const copy = () => {
      const enc = new Encoder(gpu, 'upload-bench');
      src.forEach((s, i) => enc.copy(s, 0, dst[i]!, 0, sizes[i]!));
      enc.submit();
    };
    copy();
    await gpuSync(gpu);
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) copy();
    await gpuSync(gpu);
    const sec = (performance.now() - t0) / 1000;
    console.log(JSON.stringify({ model, from, layer_bytes: bytes, reps, sec: +sec.toFixed(4), gb_s: +((bytes * reps) / sec / 1e9).toFixed(2) }));
    for (const b of src) b.destroy();
  }
  for (const b of dst) b.destroy();
}
