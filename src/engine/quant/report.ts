// Quantization report: relative Frobenius error ‖W − Ŵ‖/‖W‖ of 4-bit min-max rounding and of HQQ, per tensor and in total.
// Quantizes on the GPU when given one (shaders/quantize*.wgsl), else with the CPU quantizer (quant/hqq.ts); same format and steps.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import { quantize, quantizeError } from '../ops/quantize.ts';
import { DEFAULT_GROUP, quantLayout } from './format.ts';
import { quantErrorCpu, quantizeCpu, type HqqOptions, type QuantMethod } from './hqq.ts';

export interface QuantReportTensor {
  name: string;
  data: Float32Array;
  shape: number[];
}

export interface QuantReportOptions {
  /** Group size (default 128; rows shorter than it form one group). */
  groupSize?: number;
  hqq?: Partial<HqqOptions>;
  /** Quantize on this GPU; without it the CPU quantizer runs (fine for small models, hours for 30B). */
  gpu?: GpuContext;
  /** Called after each tensor. */
  onTensor?: (t: TensorQuantError) => void;
}

export interface TensorQuantError {
  name: string;
  shape: number[];
  numel: number;
  /** ‖W − Ŵ‖ / ‖W‖ (0 for an all-zero W). */
  minmax: number;
  hqq: number;
}

export interface QuantReport {
  groupSize: number;
  tensors: TensorQuantError[];
  /** Tensors left out: fewer than 2 dimensions, or a last dimension that is not a multiple of 8. */
  skipped: { name: string; shape: number[]; reason: string }[];
  /** Over all reported tensors: sqrt(Σ‖W − Ŵ‖²) / sqrt(Σ‖W‖²). */
  total: { numel: number; minmax: number; hqq: number };
}

/** Squared errors of min-max and HQQ for w [rows, K]. */
type Quantizer = (w: Float32Array, rows: number, K: number) => Promise<Record<QuantMethod, number>>;

/** Treats a tensor [..., K] as rows of K (all experts of a layer [E, N, K] are E * N rows). */
export async function quantReport(tensors: AsyncIterable<QuantReportTensor>, opts: QuantReportOptions = {}): Promise<QuantReport> {
  const G = opts.groupSize ?? DEFAULT_GROUP;
  quantLayout(0, 8, G);
  const run: Quantizer = opts.gpu ? gpuQuantizer(opts.gpu, G, opts.hqq) : cpuQuantizer(G, opts.hqq);
  const report: QuantReport = { groupSize: G, tensors: [], skipped: [], total: { numel: 0, minmax: 0, hqq: 0 } };
  let norm2 = 0, mm2 = 0, hqq2 = 0;
  for await (const t of tensors) {
    const K = t.shape[t.shape.length - 1] ?? 0;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new RangeError(`quantReport: ${t.name} has shape [${t.shape}] but ${t.data.length} values`);
    const reason = t.shape.length < 2 ? 'fewer than 2 dimensions' : K % 8 !== 0 || K === 0 ? `last dimension ${K} is not a multiple of 8` : null;
    if (reason) {
      report.skipped.push({ name: t.name, shape: t.shape, reason });
      continue;
    }
    let n2 = 0;
    for (let i = 0; i < t.data.length; i++) n2 += t.data[i]! * t.data[i]!;
    const e = await run(t.data, numel / K, K);
    const rel = (x: number): number => (n2 === 0 ? Math.sqrt(x) : Math.sqrt(x / n2));
    const r: TensorQuantError = { name: t.name, shape: t.shape, numel, minmax: rel(e.minmax), hqq: rel(e.hqq) };
    report.tensors.push(r);
    opts.onTensor?.(r);
    norm2 += n2;
    mm2 += e.minmax;
    hqq2 += e.hqq;
    report.total.numel += numel;
  }
  const rel = (x: number): number => (norm2 === 0 ? Math.sqrt(x) : Math.sqrt(x / norm2));
  report.total.minmax = rel(mm2);
  report.total.hqq = rel(hqq2);
  return report;
}

// ---------------------------------------------------------------------------------------------

function cpuQuantizer(G: number, hqq: Partial<HqqOptions> | undefined): Quantizer {
  return async (w, rows, K) => {
    const L = quantLayout(rows, K, G);
    const q = new Uint32Array(L.qWords), sz = new Uint32Array(L.groups), err2 = new Float64Array(L.groups);
    const out = { minmax: 0, hqq: 0 };
    for (const method of ['minmax', 'hqq'] as const) {
      const dims = { rows, K, G, method, hqq };
      quantizeCpu(q, sz, w, dims);
      quantErrorCpu(err2, w, q, sz, dims);
      out[method] = err2.reduce((a, b) => a + b, 0);
    }
    return out;
  };
}

/** Rows per GPU chunk: about 32 M weights (128 MiB of f32) at a time. */
const CHUNK_WEIGHTS = 1 << 25;

function gpuQuantizer(gpu: GpuContext, G: number, hqq: Partial<HqqOptions> | undefined): Quantizer {
  return async (w, rows, K) => {
    const out = { minmax: 0, hqq: 0 };
    const chunkRows = Math.max(1, Math.floor(CHUNK_WEIGHTS / K));
    const L = quantLayout(Math.min(rows, chunkRows), K, G);
    const wBuf = createBuffer(gpu, { label: 'quant-report.w', size: L.rows * K * 4, kind: 'workspace' }); // [chunk rows, K]
    const qBuf = createBuffer(gpu, { label: 'quant-report.q', size: L.qWords * 4, kind: 'workspace' }); // [chunk rows, K/8]
    const szBuf = createBuffer(gpu, { label: 'quant-report.sz', size: L.groups * 4, kind: 'workspace' }); // [chunk rows, ceil(K/G)]
    const errBuf = createBuffer(gpu, { label: 'quant-report.err2', size: L.groups * 4, kind: 'workspace' }); // [chunk groups]
    try {
      for (let r0 = 0; r0 < rows; r0 += chunkRows) {
        const n = Math.min(chunkRows, rows - r0);
        writeBuffer(gpu, wBuf, 0, w.subarray(r0 * K, (r0 + n) * K));
        for (const method of ['minmax', 'hqq'] as const) {
          const dims = { rows: n, K, G, method, hqq };
          const enc = new Encoder(gpu, 'quant-report');
          quantize(enc, qBuf, szBuf, wBuf, dims);
          quantizeError(enc, errBuf, wBuf, qBuf, szBuf, dims);
          enc.submit();
          const err2 = await readF32(gpu, errBuf, 0, quantLayout(n, K, G).groups);
          for (let i = 0; i < err2.length; i++) out[method] += err2[i]!;
        }
      }
    } finally {
      for (const b of [wBuf, qBuf, szBuf, errBuf]) b.destroy();
    }
    return out;
  };
}
