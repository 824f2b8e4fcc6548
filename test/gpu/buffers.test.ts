// Host ↔ GPU transfers in pieces (writeBuffer: WRITE_PIECE per queue call; uploadPaced: a queue wait every PENDING_BYTES;
// readBuffer: READ_PIECE per mapping) give back exactly the bytes written, at any offset and any length (odd tails
// included), and a BufferPool hands a streamed layer's buffers to the next one of the same size, usage and kind only.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/node/gpu.ts';
import { allocatedBytes, BufferPool, createBuffer, peakAllocatedBytes, PENDING_BYTES, READ_PIECE, readBuffer, uploadPaced, withPool, WRITE_PIECE, writeBuffer } from '../../src/engine/gpu/buffers.ts';

function random(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const POISON = 0xa5;

describe('transfers in pieces', () => {
  it('writeBuffer, uploadPaced and readBuffer return every byte, across piece boundaries and with odd tails', async () => {
    const gpu = await nodeGpu();
    expect(READ_PIECE).toBeGreaterThan(WRITE_PIECE);
    const size = READ_PIECE + 3 * WRITE_PIECE + 4096; // several pieces each way
    const buf = createBuffer(gpu, { label: 'pieces', size });
    const poison = new Uint8Array(size).fill(POISON);
    for (const [offset, n, paced] of [[0, size, false], [4096, 2 * WRITE_PIECE + 7, false], [8, PENDING_BYTES + WRITE_PIECE + 2, true]] as const) {
      writeBuffer(gpu, buf, 0, poison);
      const data = random(n, offset + n);
      // every queue write a piece at most, together covering the data once
      const q = gpu.device.queue;
      const write = q.writeBuffer;
      const sizes: number[] = [];
      q.writeBuffer = ((b: GPUBuffer, o: number, d: Uint8Array<ArrayBuffer>) => (sizes.push(d.byteLength), write.call(q, b, o, d))) as typeof q.writeBuffer;
      try {
        if (paced) await uploadPaced(gpu, buf, offset, data);
        else writeBuffer(gpu, buf, offset, data);
      } finally {
        q.writeBuffer = write;
      }
      expect(Math.max(...sizes)).toBeLessThanOrEqual(WRITE_PIECE);
      expect(sizes.reduce((a, x) => a + x, 0)).toBe(Math.ceil(n / 4) * 4);
      expect(sizes.length).toBeGreaterThan(1);
      const back = new Uint8Array(await readBuffer(gpu, buf));
      expect(back.length).toBe(size);
      const firstBad = (lo: number, hi: number, want: (i: number) => number) => { for (let i = lo; i < hi; i++) if (back[i] !== want(i)) return i; return -1; };
      expect(firstBad(0, offset, () => POISON)).toBe(-1);
      expect(firstBad(offset, offset + n, (i) => data[i - offset]!)).toBe(-1);
      // a write whose length is not a multiple of 4 pads its last word with zeros
      const end = Math.ceil((offset + n) / 4) * 4;
      expect(firstBad(offset + n, end, () => 0)).toBe(-1);
      expect(firstBad(end, size, () => POISON)).toBe(-1);
    }
    // a read at an offset, of an odd length, in several mappings
    const part = new Uint8Array(await readBuffer(gpu, buf, 12, READ_PIECE + 5));
    const whole = new Uint8Array(await readBuffer(gpu, buf));
    expect(part.length).toBe(READ_PIECE + 5);
    expect(Buffer.from(part).equals(Buffer.from(whole.subarray(12, 12 + READ_PIECE + 5)))).toBe(true);
    buf.destroy();
  }, 120_000);
});

describe('BufferPool', () => {
  it('gives a buffer back only to a request of its size, usage and kind, inside withPool; destroy frees what it holds', async () => {
    const gpu = await nodeGpu();
    const pool = new BufferPool();
    const before = allocatedBytes(gpu).weights ?? 0;
    const a = createBuffer(gpu, { label: 'a', size: 1000, kind: 'weights' });
    const b = createBuffer(gpu, { label: 'b', size: 2000, kind: 'weights' });
    pool.give([a, b]);
    // outside withPool: new buffers
    const c = createBuffer(gpu, { label: 'c', size: 1000, kind: 'weights' });
    expect(c).not.toBe(a);
    const got = await withPool(gpu, pool, async () => [
      createBuffer(gpu, { label: 'x', size: 2000, kind: 'weights' }),
      createBuffer(gpu, { label: 'y', size: 1000, kind: 'activations' }), // another kind
      createBuffer(gpu, { label: 'z', size: 999, kind: 'weights' }), // rounds to 1000: same size
      createBuffer(gpu, { label: 'w', size: 1000, kind: 'weights' }), // the pool has no second one
    ]);
    expect(got[0]).toBe(b);
    expect(got[1]).not.toBe(a);
    expect(got[2]).toBe(a);
    expect(got[3]).not.toBe(a);
    await expect(withPool(gpu, pool, () => withPool(gpu, pool, async () => 0))).rejects.toThrow(/another pool/);
    pool.give([got[3]!]);
    pool.destroy();
    for (const x of [a, b, c, got[1]!]) x.destroy();
    expect(allocatedBytes(gpu).weights ?? 0).toBe(before);
    expect(() => pool.give([gpu.device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE })])).toThrow(/not made by createBuffer/);
  });
});

describe('peakAllocatedBytes', () => {
  it('is the most bytes live at once on the device, destroyed buffers given back; a reset starts from what is live', async () => {
    const gpu = await nodeGpu({ fresh: true });
    expect(peakAllocatedBytes(gpu)).toBe(0);
    const a = createBuffer(gpu, { label: 'a', size: 1000, kind: 'weights' });
    const b = createBuffer(gpu, { label: 'b', size: 3000, kind: 'workspace' });
    b.destroy();
    b.destroy(); // twice: counted once
    const c = createBuffer(gpu, { label: 'c', size: 2000, kind: 'activations' });
    expect(peakAllocatedBytes(gpu)).toBe(4000); // a + b, before b went
    expect(peakAllocatedBytes(gpu, true)).toBe(4000);
    expect(peakAllocatedBytes(gpu)).toBe(3000); // a + c live
    const d = createBuffer(gpu, { label: 'd', size: 1500, kind: 'weights' });
    expect(peakAllocatedBytes(gpu)).toBe(4500);
    for (const x of [a, c, d]) x.destroy();
    expect(peakAllocatedBytes(gpu)).toBe(4500);
    gpu.device.destroy();
  });
});
