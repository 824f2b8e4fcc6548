// Safetensors writer → reader round trips, exact byte-range reads, and one test per malformed-file rule.
// Malformed files are built by hand (helpers.rawFile); each must fail fast with a SafetensorsError naming file and tensor.

import { describe, expect, it } from 'vitest';
import { blobSource, memorySource } from '../../../src/engine/io/byte-source.ts';
import { MAX_HEADER_BYTES, openSafetensors, SafetensorsError } from '../../../src/engine/io/safetensors.ts';
import { encodeSafetensors, safetensorsHeader, type TensorData } from '../../../src/engine/io/safetensors-write.ts';
import { concat, randomBytes, rawFile, recording } from './helpers.ts';

const FILE = 'model-00002.safetensors';

const sample = (): TensorData[] => [
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [5, 3], data: randomBytes(30, 1) },
  { name: 'scalar', dtype: 'F32', shape: [], data: randomBytes(4, 2) },
  { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint8Array(0) },
  { name: 'ids', dtype: 'I64', shape: [3], data: randomBytes(24, 3) },
  { name: 'mask', dtype: 'BOOL', shape: [7], data: randomBytes(7, 4) },
  { name: 'ünïcode.weight', dtype: 'F8_E4M3', shape: [2, 2, 2], data: randomBytes(8, 5) },
];

describe('round trip', () => {
  it('reads back what the writer wrote, from memory and from a Blob', async () => {
    const tensors = sample();
    const chunks = encodeSafetensors(tensors, { format: 'pt', note: 'x' });
    const bytes = concat(chunks);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const json = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(json.trimEnd().endsWith('}')).toBe(true);
    expect(/^[^ ]*}( *)$/.exec(json)?.[1].length ?? -1).toBeLessThan(8); // only space padding, fewer than 8

    for (const source of [memorySource(bytes, FILE), blobSource(new Blob(chunks), FILE)]) {
      const f = await openSafetensors(source);
      expect(f.headerSize).toBe(n);
      expect(f.dataStart).toBe(8 + n);
      expect(f.metadata).toEqual({ format: 'pt', note: 'x' });
      expect([...f.tensors.keys()]).toEqual(tensors.map((t) => t.name));
      let at = 0;
      for (const t of tensors) {
        const info = f.tensors.get(t.name)!;
        expect(info).toMatchObject({ dtype: t.dtype, shape: t.shape, begin: at, byteLength: t.data.byteLength, file: FILE });
        at += t.data.byteLength;
        expect(await f.readTensor(t.name)).toEqual(t.data);
      }
      expect(await f.readTensorRange('model.embed_tokens.weight', 6, 12)).toEqual(tensors[0].data.subarray(6, 18));
      await expect(f.readTensorRange('ids', 20, 5)).rejects.toThrow(/"ids".*outside its 24 bytes/);
      await expect(f.readTensor('nope')).rejects.toThrow(SafetensorsError);
    }
  });

  it('safetensorsHeader gives the offsets in order and rejects bad entries', () => {
    const { header, offsets, dataBytes } = safetensorsHeader([
      { name: 'a', dtype: 'F32', shape: [2, 3] }, { name: 'b', dtype: 'BF16', shape: [5] },
    ]);
    expect(offsets).toEqual([[0, 24], [24, 34]]);
    expect(dataBytes).toBe(34);
    expect(header.byteLength % 8).toBe(0);
    expect(() => safetensorsHeader([{ name: 'a', dtype: 'F32', shape: [1] }, { name: 'a', dtype: 'F32', shape: [1] }])).toThrow();
    expect(() => safetensorsHeader([{ name: 'a', dtype: 'F32', shape: [-1] }])).toThrow();
    expect(() => encodeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(4) }])).toThrow(/needs 8/);
  });

  it('opening reads only the length and the header; readTensor reads exactly its range', async () => {
    const tensors = sample();
    const src = recording(memorySource(concat(encodeSafetensors(tensors)), FILE));
    const f = await openSafetensors(src);
    expect(src.calls).toEqual([{ offset: 0, length: 8 }, { offset: 8, length: f.headerSize }]);
    src.calls.length = 0;
    const info = f.tensors.get('ids')!;
    await f.readTensor('ids');
    await f.readTensorRange('model.embed_tokens.weight', 4, 10);
    expect(src.calls).toEqual([
      { offset: f.dataStart + info.begin, length: 24 },
      { offset: f.dataStart + 4, length: 10 },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------

const T1 = 'model.layers.3.mlp.gate.weight';
const T0 = 'model.layers.3.mlp.experts.0.up_proj.weight';

async function failure(bytes: Uint8Array): Promise<SafetensorsError> {
  try {
    await openSafetensors(memorySource(bytes, FILE));
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as Error).message.startsWith(`${FILE}: `)).toBe(true);
    return e as SafetensorsError;
  }
  throw new Error('opened a malformed file without an error');
}

describe('malformed files', { timeout: 5000 }, () => {
  const two = (a: [number, number], b: [number, number]): object => ({
    [T0]: { dtype: 'F32', shape: [(a[1] - a[0]) / 4], data_offsets: a },
    [T1]: { dtype: 'F32', shape: [(b[1] - b[0]) / 4], data_offsets: b },
  });

  it('a valid hand-built file opens (the builder itself is sound)', async () => {
    const f = await openSafetensors(memorySource(rawFile(two([0, 16], [16, 40]), 40), FILE));
    expect(f.tensors.get(T1)).toMatchObject({ begin: 16, end: 40, shape: [6] });
  });

  it('truncated data', async () => {
    const whole = rawFile(two([0, 16], [16, 40]), 40);
    const e = await failure(whole.subarray(0, whole.byteLength - 10));
    expect(e.message).toContain(`tensor "${T1}": data_offsets [16, 40] run past the end of the data section (30 bytes`);
    expect(e.tensor).toBe(T1);
  });

  it('header length larger than the file', async () => {
    const e = await failure(rawFile(two([0, 16], [16, 40]), 40, 5000n));
    expect(e.message).toMatch(/header length 5000 runs past the end of the file \(\d+ bytes\)/);
  });

  it('header length above 100,000,000 (checked before anything else)', async () => {
    for (const len of [BigInt(MAX_HEADER_BYTES + 1), 0xffffffffffffffffn]) {
      const e = await failure(rawFile(two([0, 16], [16, 40]), 40, len));
      expect(e.message).toContain(`header length ${len} exceeds the format's limit of 100000000 bytes`);
    }
  });

  it('files shorter than 8 bytes', async () => {
    expect((await failure(new Uint8Array(5))).message).toContain('too short');
  });

  it('invalid JSON, non-object JSON, or a header not starting with "{"', async () => {
    expect((await failure(rawFile('{"a": {"dtype": "F32",', 0))).message).toContain('not valid UTF-8 JSON');
    expect((await failure(rawFile(Uint8Array.of(0x7b, 0xff, 0x7d), 0))).message).toContain('not valid UTF-8 JSON');
    expect((await failure(rawFile('  {}', 0))).message).toContain('does not begin with "{"');
    expect((await failure(rawFile('[1, 2]', 0))).message).toContain('does not begin with "{"');
  });

  it('overlapping offsets name both tensors', async () => {
    const e = await failure(rawFile(two([0, 16], [8, 40]), 40));
    expect(e.message).toBe(`${FILE}: tensor "${T1}": data_offsets [8, 40] overlap the previous tensor "${T0}" [0, 16]`);
  });

  it('a gap between tensors, and one before the first', async () => {
    expect((await failure(rawFile(two([0, 16], [20, 44]), 44))).message)
      .toBe(`${FILE}: tensor "${T1}": data_offsets [20, 44] leave a gap of 4 bytes after the previous tensor "${T0}" [0, 16]`);
    expect((await failure(rawFile(two([4, 20], [20, 44]), 44))).message).toContain(`tensor "${T0}": data_offsets [4, 20] leave a gap`);
  });

  it('offsets past the end of the data section', async () => {
    const e = await failure(rawFile(two([0, 16], [16, 400]), 40));
    expect(e.message).toContain(`tensor "${T1}": data_offsets [16, 400] run past the end of the data section (40 bytes`);
  });

  it('trailing bytes no tensor covers', async () => {
    const e = await failure(rawFile(two([0, 16], [16, 40]), 48));
    expect(e.message).toContain(`the data section has 48 bytes but the tensors cover only 40 (the last is "${T1}")`);
  });

  it('size mismatch between offsets and shape × dtype', async () => {
    const header = { [T1]: { dtype: 'BF16', shape: [3, 4], data_offsets: [0, 20] } };
    const e = await failure(rawFile(header, 20));
    expect(e.message).toBe(`${FILE}: tensor "${T1}": data_offsets [0, 20] hold 20 bytes but shape [3, 4] of BF16 needs 24`);
  });

  it('unknown dtype, bad shape, bad offsets, bad metadata', async () => {
    const one = (entry: object): Uint8Array => rawFile({ [T1]: entry }, 8);
    expect((await failure(one({ dtype: 'C64', shape: [1], data_offsets: [0, 8] }))).message)
      .toContain(`tensor "${T1}": unknown dtype "C64"`);
    expect((await failure(one({ dtype: 'U8', shape: [-8], data_offsets: [0, 8] }))).message).toContain('shape [-8]');
    expect((await failure(one({ dtype: 'U8', shape: [2.5], data_offsets: [0, 8] }))).message).toContain('shape [2.5]');
    expect((await failure(one({ dtype: 'U8', shape: [8], data_offsets: [8, 0] }))).message).toContain('data_offsets [8,0]');
    expect((await failure(one({ dtype: 'U8', shape: [8] }))).message).toContain(`tensor "${T1}": data_offsets undefined`);
    const meta = rawFile({ __metadata__: { format: 1 }, [T1]: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, 8);
    expect((await failure(meta)).message).toContain('"__metadata__" value for "format" is not a string');
  });
});
