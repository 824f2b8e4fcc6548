// quantReport on the CPU quantizer: every routed-expert weight of the demo model (public/models/usaf-demo-moe, bf16)
// has a lower relative Frobenius error with HQQ than with min-max; plus skipping, shape checks and the all-zero case.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { decodeF32 } from '../../../src/engine/io/dtype.ts';
import { quantReport, type QuantReportTensor } from '../../../src/engine/quant/report.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { randn } from '../../helpers/random.ts';

const DEMO = fileURLToPath(new URL('../../../public/models/usaf-demo-moe/', import.meta.url));

async function* list(ts: QuantReportTensor[]): AsyncIterable<QuantReportTensor> {
  yield* ts;
}

describe('quantReport', () => {
  it('HQQ beats min-max on every expert weight of the demo model', async () => {
    const ckpt = await openCheckpoint(nodeFolder(DEMO));
    const names = [...ckpt.tensors.keys()].filter((n) => n.includes('.mlp.experts.')).sort();
    expect(names.length).toBe(8 * 16 * 3);
    async function* experts(): AsyncIterable<QuantReportTensor> {
      for (const name of names) {
        const t = ckpt.tensors.get(name)!;
        yield { name, data: decodeF32(t.dtype, await ckpt.readTensor(name)), shape: t.shape };
      }
    }
    const seen: string[] = [];
    const r = await quantReport(experts(), { onTensor: (t) => seen.push(t.name) });
    await ckpt.close();
    expect(seen).toEqual(names);
    expect(r.skipped).toEqual([]);
    expect(r.total.numel).toBe(8 * 16 * 3 * 128 * 256);
    for (const t of r.tensors) expect(t.hqq, t.name).toBeLessThan(t.minmax);
    // 4 bits, groups of 128: about 10 % relative error for min-max; HQQ takes a few percent of it off.
    expect(r.total.minmax).toBeGreaterThan(0.05);
    expect(r.total.minmax).toBeLessThan(0.2);
    expect(r.total.hqq).toBeLessThan(r.total.minmax * 0.985);
    console.log(`demo experts, G 128: min-max ${r.total.minmax.toFixed(5)}, HQQ ${r.total.hqq.toFixed(5)}`);
  });

  it('skips vectors and odd rows, checks shapes, and reports 0 for zeros', async () => {
    const r = await quantReport(list([
      { name: 'norm', data: new Float32Array(16), shape: [16] },
      { name: 'odd', data: randn(2 * 12, 1), shape: [2, 12] },
      { name: 'zeros', data: new Float32Array(4 * 32), shape: [4, 32] },
      { name: 'w', data: randn(3 * 2 * 40, 2), shape: [3, 2, 40] },
    ]), { groupSize: 16 });
    expect(r.skipped.map((s) => s.name)).toEqual(['norm', 'odd']);
    expect(r.tensors.map((t) => [t.name, t.numel])).toEqual([['zeros', 128], ['w', 240]]);
    expect(r.tensors[0]).toMatchObject({ minmax: 0, hqq: 0 });
    // Only w has any error, so the totals are w's errors scaled by ‖w‖ / ‖all‖ = 1.
    expect(r.total.minmax).toBeCloseTo(r.tensors[1]!.minmax, 12);
    expect(r.total.hqq).toBeLessThan(r.total.minmax);
    await expect(quantReport(list([{ name: 'bad', data: new Float32Array(10), shape: [2, 8] }]))).rejects.toThrow(/shape \[2,8\] but 10 values/);
    await expect(quantReport(list([]), { groupSize: 12 })).rejects.toThrow(/multiple of 8/);
  });
});
