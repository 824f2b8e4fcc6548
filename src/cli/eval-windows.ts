// Node helper for `usaf eval` and `usaf quant-report`: mean next-token loss of a loaded model over consecutive SEQ-token
// windows of a token stream, BATCH windows per forward pass; and freeing a model's GPU buffers.
import type { GpuContext } from '../engine/gpu/device.ts';
import { Forward } from '../engine/train/forward.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import type { ModelWeights } from '../engine/train/weights.ts';
import type { TokenStream } from '../engine/train/token-stream.ts';
import { windowBatch } from './dataset.ts';

export interface WindowLoss {
  loss: number;
  tokens: number;
  sec: number;
}

export async function evalWindows(gpu: GpuContext, spec: ModelSpec, weights: ModelWeights, stream: TokenStream, o: { seq: number; batch: number; windows: number; label?: string }): Promise<WindowLoss> {
  const fwd = new Forward(gpu, spec, weights, { maxTokens: o.batch * o.seq });
  const pad = stream.ids[stream.ids.length - 1] ?? 0;
  const show = process.stderr.isTTY || !!process.env.USAF_PROGRESS;
  let sum = 0;
  let n = 0;
  const t0 = performance.now();
  for (let w = 0; w < o.windows; w += o.batch) {
    const count = Math.min(o.batch, o.windows - w);
    const { ids, targets } = windowBatch(stream, w, count, o.seq, pad);
    const r = await fwd.run(ids, count, o.seq, { targets });
    sum += r.sumLoss;
    n += r.tokens;
    if (show) process.stderr.write(`\r${o.label ?? 'eval'} ${Math.min(w + count, o.windows)}/${o.windows} windows, loss ${(sum / n).toFixed(4)}`);
  }
  if (show) process.stderr.write('\n');
  return { loss: sum / n, tokens: n, sec: +((performance.now() - t0) / 1000).toFixed(1) };
}

/** Destroys every GPU buffer of a loaded model (the weights are unusable afterwards). */
export function destroyWeights(w: ModelWeights): void {
  const bufs = new Set<GPUBuffer>([w.finalNorm.buf, w.lmHead.buf]);
  if (w.embed) bufs.add(w.embed.buf);
  for (const l of w.layers) {
    for (const t of Object.values(l.t)) if (t) bufs.add(t.buf);
    if (l.experts) for (const t of [l.experts.gate, l.experts.up, l.experts.down]) bufs.add(t.buf);
  }
  for (const b of bufs) b.destroy();
  w.slots?.destroy();
}
