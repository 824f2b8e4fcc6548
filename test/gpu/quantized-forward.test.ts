// Forward with 4-bit routed experts (loadWeights quantizeExperts): on the qwen3_moe fixture (G = 32: hidden 64 in two
// groups, expert width 48 in 32 + a short 16) it equals the f32 forward on the same weights dequantized (written into
// f32 expert buffers); on the demo model (G = 128) its loss stays near the unquantized model's.
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { tokenizeFile, windowBatch } from '../../src/cli/dataset.ts';
import { createBuffer } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { Forward } from '../../src/engine/train/forward.ts';
import { dequantizeExperts } from '../../src/engine/quant/experts-q4.ts';
import { readF32, testGpu } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { rng } from '../helpers/random.ts';

const FIX = 'test/fixtures/qwen3_moe';

describe('forward with 4-bit experts', () => {
  it('equals the f32 forward on the dequantized weights (fixture, G = 32)', async () => {
    const gpu = await testGpu();
    const q = await openModel(gpu, FIX, { quantizeExperts: { groupSize: 32 } });
    const spec = q.spec;
    const f = await openModel(gpu, FIX, { trainFrom: 0 }); // every layer's experts in f32
    const per = spec.moe.numExperts * spec.moe.expertIntermediate * spec.hidden;
    const gu = createBuffer(gpu, { label: 'test.gu', size: 2 * per * 4 });
    for (let L = 0; L < spec.numLayers; L++) {
      const ex = q.weights.layers[L]!.experts!;
      const fx = f.weights.layers[L]!.experts!;
      expect(ex.gate.dtype).toBe('q4');
      expect(fx.gate.dtype).toBe('f32');
      const enc = new Encoder(gpu, 'test.dequant');
      dequantizeExperts(enc, gu, fx.down.buf, ex, spec);
      enc.copy(gu, 0, fx.gate.buf, 0, per * 4);
      enc.copy(gu, per * 4, fx.up.buf, 0, per * 4);
      enc.submit();
    }
    const r = rng(5);
    const batch = 2, seq = 24;
    const ids = Uint32Array.from({ length: batch * seq }, () => Math.floor(r() * spec.vocab));
    const fq = new Forward(gpu, spec, q.weights, { maxTokens: batch * seq });
    const ff = new Forward(gpu, spec, f.weights, { maxTokens: batch * seq });
    const a = await fq.run(ids, batch, seq);
    const la = await fq.logits(batch * seq);
    const b = await ff.run(ids, batch, seq);
    const lb = await ff.logits(batch * seq);
    expectClose(la, lb, 1e-5, 1e-5, 'logits');
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5);
    const plain = await openModel(gpu, FIX);
    const c = await new Forward(gpu, spec, plain.weights, { maxTokens: batch * seq }).run(ids, batch, seq);
    expect(a.loss).not.toBe(c.loss); // the quantization changed something
    for (const m of [q, f, plain]) await m.ckpt.close();
  });

  it('keeps the demo model\'s held-out loss within 2 % (G = 128, 64 tokens)', async () => {
    const gpu = await testGpu();
    const MODEL = 'public/models/usaf-demo-moe';
    const ds = await tokenizeFile(MODEL, 'public/data/heldout.jsonl');
    const seq = 64;
    const { ids, targets } = windowBatch(ds.all, 0, 1, seq, 0);
    const q = await openModel(gpu, MODEL, { quantizeExperts: { groupSize: 128 } });
    const a = await new Forward(gpu, q.spec, q.weights, { maxTokens: seq }).run(ids, 1, seq, { targets });
    const p = await openModel(gpu, MODEL);
    const b = await new Forward(gpu, p.spec, p.weights, { maxTokens: seq }).run(ids, 1, seq, { targets });
    await q.ckpt.close();
    await p.ckpt.close();
    console.log(`demo, ${seq} held-out tokens: loss 4-bit experts ${a.loss.toFixed(5)}, bf16 ${b.loss.toFixed(5)}`);
    expect(Math.abs(a.loss / b.loss - 1)).toBeLessThan(0.02);
    expect(a.loss).not.toBe(b.loss);
  });
});
