// FP8 E4M3 block-scaled import: dequantization of a hand-built tensor (known codes, a distinct scale per 128×128 block, ragged
// edges), the error paths, and readWeight on an FP8 copy of the DeepSeek-V3 fixture equal to its bf16 dequantized twin.
import { describe, expect, it } from 'vitest';
import { dequantFp8, fp8ScaleName, fp8ScaleShape } from '../../../src/engine/io/fp8.ts';
import { decodeF32 } from '../../../src/engine/io/dtype.ts';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { allTensors } from '../../../src/engine/model/tensors.ts';
import { readWeight } from '../../../src/engine/train/weights.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { encodeE4m3, fp8Twins } from '../../helpers/fp8-checkpoint.ts';
import { readFileSync } from 'node:fs';

describe('fp8 block dequant', () => {
  it('known E4M3 codes times the scale of each 128×128 block, ragged last blocks included', () => {
    const rows = 130, cols = 257; // 2 x 3 blocks, the last row/column blocks partial
    expect(fp8ScaleShape(rows, cols)).toEqual([2, 3]);
    const scale = Float32Array.of(2, 3, 5, 7, 11, 0.125);
    // codes: 0x38 = 1.0, 0xb8 = -1.0, 0x7e = 448, 0x01 = 2^-9 (subnormal), 0x00 = 0, 0x3c = 1.5
    const codes = [0x38, 0xb8, 0x7e, 0x01, 0x00, 0x3c];
    const values = [1, -1, 448, 2 ** -9, 0, 1.5];
    const q = new Uint8Array(rows * cols);
    for (let i = 0; i < q.length; i++) q[i] = codes[(i * 7 + (i >> 5)) % codes.length]!;
    const w = dequantFp8(q, scale, [rows, cols]);
    let checked = 0;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const s = scale[(r < 128 ? 0 : 3) + (c < 128 ? 0 : c < 256 ? 1 : 2)]!;
        expect(w[i]).toBe(values[codes.indexOf(q[i]!)]! * s);
        checked++;
      }
    }
    expect(checked).toBe(rows * cols);
    // the corner element of the last (1 x 1) block uses scale 0.125
    expect(w[rows * cols - 1]).toBe(values[codes.indexOf(q[rows * cols - 1]!)]! * 0.125);
  });

  it('NaN codes stay NaN; wrong sizes throw', () => {
    expect(Number.isNaN(dequantFp8(Uint8Array.of(0x7f, 0xff), [1], [1, 2])[0])).toBe(true);
    expect(() => dequantFp8(new Uint8Array(6), [1], [2, 3, 1])).toThrow(/1-D or 2-D/);
    expect(() => dequantFp8(new Uint8Array(5), [1], [2, 3])).toThrow(/5 bytes/);
    expect(() => dequantFp8(new Uint8Array(200 * 3), [1], [200, 3])).toThrow(/expected \[2, 1\]/);
    expect(fp8ScaleName('model.layers.0.mlp.down_proj.weight')).toBe('model.layers.0.mlp.down_proj.weight_scale_inv');
  });

  it('encodeE4m3 (test helper) round-trips every finite code', () => {
    for (let b = 0; b < 256; b++) {
      if ((b & 0x7f) === 0x7f || b === 0x80) continue; // NaN codes; -0 comes back as +0
      const v = decodeF32('F8_E4M3', Uint8Array.of(b))[0]!;
      expect(decodeF32('F8_E4M3', Uint8Array.of(encodeE4m3(v)))[0]).toBe(v);
    }
  });

  it('readWeight: an FP8 copy of the DeepSeek-V3 fixture reads back equal to its bf16 dequantized twin', async () => {
    const dir = 'test/fixtures/deepseek_v3';
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')) as Record<string, unknown>;
    const spec = parseConfig({ ...cfg, quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128], activation_scheme: 'dynamic' } });
    expect(spec.quantization).toBe('fp8');
    const orig = await openCheckpoint(nodeFolder(dir));
    const { fp8, bf16, quantized } = await fp8Twins(orig);
    await orig.close();
    expect(quantized.length).toBeGreaterThan(50);
    expect(fp8.tensors.get(quantized[0]!)!.dtype).toBe('F8_E4M3');
    let n = 0;
    for (const e of allTensors(spec)) {
      const a = await readWeight(fp8, e, spec.quantization);
      const b = await readWeight(bf16, e, spec.quantization);
      if (quantized.includes(e.name)) {
        expect(a.dtype, e.name).toBe('F32');
        n++;
      }
      expect(decodeF32(a.dtype, a.bytes), e.name).toEqual(decodeF32(b.dtype, b.bytes));
    }
    expect(n).toBe(quantized.length);
    // an fp8 weight without its scales is refused in an fp8 checkpoint
    const noScale = { ...fp8, tensors: new Map([...fp8.tensors].filter(([k]) => k !== `${quantized[0]}_scale_inv`)) };
    const entry = allTensors(spec).find((e) => e.name === quantized[0])!;
    await expect(readWeight(noScale, entry, 'fp8')).rejects.toThrow(/no ".*_scale_inv" block scales/);
  });
});
