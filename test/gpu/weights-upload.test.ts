// Tensors stored as they are used (bf16, f32) are read and uploaded a piece at a time (LoadOptions.uploadPiece) instead
// of whole: the GPU gets the same bytes as a whole read (packBf16Pairs' zero padding of an odd bf16 count included), and
// each tensor is reported once.
import { describe, expect, it } from 'vitest';
import { readSpec } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { readBuffer } from '../../src/engine/gpu/buffers.ts';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { checkpointReader, loadEmbed, loadWeights, type ModelWeights, type Reader } from '../../src/engine/train/weights.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { importQ4 } from '../../src/engine/quant/import-q4.ts';
import { q4ExpertNames } from '../../src/engine/quant/stored-q4.ts';

const FIX = 'test/fixtures/qwen3_moe';

describe('weights uploaded in pieces', () => {
  it('a checkpoint loads byte for byte as with whole reads; every tensor reported once, in the same order', async () => {
    const gpu = await nodeGpu();
    const spec = await readSpec(FIX);
    const ckpt = await openCheckpoint(nodeFolder(FIX));
    const ranged: string[] = [];
    const spy = { ...ckpt, readTensorRange: (name: string, o: number, n: number) => (ranged.push(name), ckpt.readTensorRange(name, o, n)) };
    const load = async (uploadPiece?: number) => {
      const seen: string[] = [];
      const w = await loadWeights(gpu, spec, spy, { f32ExpertLayers: new Set([1]), uploadPiece, onTensor: (name) => seen.push(name) });
      return { w, seen };
    };
    const whole = await load();
    expect(ranged.length).toBe(0); // every fixture tensor is under PENDING_BYTES
    const pieces = await load(1004); // a piece that divides no tensor: each large one ends in a partial piece
    expect(pieces.seen).toEqual(whole.seen);
    const bufs = (w: ModelWeights) => [w.embed!, w.finalNorm, w.lmHead, ...w.layers.flatMap((l) => Object.values(l.t))].map((t) => t.buf);
    const a = bufs(whole.w), b = bufs(pieces.w);
    expect(b.length).toBe(a.length);
    let streamed = 0;
    for (let i = 0; i < a.length; i++) {
      expect(b[i]!.size, a[i]!.label).toBe(a[i]!.size);
      const x = new Uint8Array(await readBuffer(gpu, a[i]!)), y = new Uint8Array(await readBuffer(gpu, b[i]!));
      expect(Buffer.from(y).equals(Buffer.from(x)), a[i]!.label).toBe(true);
      if (ranged.includes(a[i]!.label)) streamed++;
    }
    expect(streamed).toBeGreaterThan(5); // the embedding, the LM head, the attention projections
    await expect(loadWeights(gpu, spec, ckpt, { uploadPiece: 1002 })).rejects.toThrow(/multiple of 4/);
    await ckpt.close();
  });

  it('an odd count of bf16 elements: the last piece padded with zeros, as a whole read packs it', async () => {
    const gpu = await nodeGpu();
    const base = await readSpec(FIX);
    const spec = { ...base, vocab: 7, hidden: 3 }; // the embedding [7, 3]: 21 bf16 values, 42 bytes
    const bytes = new Uint8Array(42).map((_, i) => (i * 37 + 11) & 0xff);
    const entry = { name: 'model.embed_tokens.weight', dtype: 'BF16' as const };
    const whole: Reader = async () => ({ dtype: entry.dtype, bytes: bytes.slice() });
    let done = 0;
    const inPieces: Reader = Object.assign(async () => { throw new Error('read whole'); }, {
      stored: () => ({ dtype: entry.dtype, byteLength: 42, read: async (o: number, n: number) => bytes.slice(o, o + n), done: () => void done++ }),
    });
    const fakeCkpt = null as never;
    const a = await loadEmbed(gpu, spec, fakeCkpt, {}, whole);
    const b = await loadEmbed(gpu, spec, fakeCkpt, { uploadPiece: 8 }, inPieces); // pieces of 8: the last holds 2 bytes
    expect(done).toBe(1);
    const x = new Uint8Array(await readBuffer(gpu, a.buf)), y = new Uint8Array(await readBuffer(gpu, b.buf));
    expect(y.length).toBe(44);
    expect([...y]).toEqual([...x]);
    expect([...y.subarray(42)]).toEqual([0, 0]);
    expect([...y.subarray(0, 42)]).toEqual([...bytes]);
    a.buf.destroy();
    b.buf.destroy();
  });

  it('a stored 4-bit model: the expert buffers of each layer read and uploaded in pieces equal a whole read', async () => {
    const gpu = await nodeGpu();
    const spec = await readSpec(FIX);
    const src = await openCheckpoint(nodeFolder(FIX));
    const store = memorySink('store');
    await importQ4(gpu, spec, store, src, nodeFolder(FIX), { groupSize: 32 });
    const ckpt = await openCheckpoint(store.folder());
    const ranged = new Map<string, number>();
    const spy = { ...ckpt, readTensorRange: (name: string, o: number, n: number) => (ranged.set(name, (ranged.get(name) ?? 0) + 1), ckpt.readTensorRange(name, o, n)) };
    const whole = await loadWeights(gpu, spec, spy, { quantizeExperts: { groupSize: 32 } });
    const pieces = await loadWeights(gpu, spec, spy, { quantizeExperts: { groupSize: 32 }, uploadPiece: 1004 });
    let layers = 0;
    for (let L = 0; L < spec.numLayers; L++) {
      const a = whole.layers[L]!.experts, b = pieces.layers[L]!.experts;
      if (!a || !b) continue;
      layers++;
      for (const [x, y] of [[a.gate.buf, b.gate.buf], [a.down.buf, b.down.buf]] as const) {
        expect(y.size, x.label).toBe(x.size);
        expect(Buffer.from(new Uint8Array(await readBuffer(gpu, y))).equals(Buffer.from(new Uint8Array(await readBuffer(gpu, x)))), x.label).toBe(true);
      }
      const names = q4ExpertNames(spec, L);
      const bytes = ckpt.tensors.get(names.gateUp)!.byteLength;
      // whole: one range read per buffer; in pieces of 1004 bytes: ceil(bytes / 1004) more
      expect(ranged.get(names.gateUp), names.gateUp).toBe(1 + Math.ceil(bytes / 1004));
    }
    expect(layers).toBe(spec.numLayers);
    await ckpt.close();
    await src.close();
  });
});
