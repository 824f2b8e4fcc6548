// Times each stage of one demo-model layer forward at batch × seq tokens (sync after each stage): where forward time goes.
import { nodeGpu } from '../src/node/gpu.ts';
import { openModel } from '../src/cli/load-model.ts';
import { Forward } from '../src/engine/train/forward.ts';
import { Encoder } from '../src/engine/gpu/encoder.ts';
import { gpuSync } from '../src/engine/gpu/buffers.ts';

const seq = Number(process.argv[2] ?? 512), batch = Number(process.argv[3] ?? 2);
const gpu = await nodeGpu();
const m = await openModel(gpu, 'public/models/usaf-demo-moe');
const fwd = new Forward(gpu, m.spec, m.weights, { maxTokens: batch * seq });
const T = batch * seq;
fwd.setBatch(Uint32Array.from({ length: T }, (_, i) => (i * 31) % 4096), batch, seq);
const times: Record<string, number> = {};
async function stage(name: string, f: (enc: Encoder) => void) {
  await gpuSync(gpu);
  const t0 = performance.now();
  const enc = new Encoder(gpu);
  f(enc);
  enc.submit();
  await gpuSync(gpu);
  times[name] = (times[name] ?? 0) + performance.now() - t0;
}
// Warm-up (compiles every kernel), then time each stage of layer 0 by re-running the layer piecewise.
await stage('warmup', (enc) => { fwd.embed(enc, T); fwd.layer(enc, 0, fwd.resid, fwd.acts, batch, seq); fwd.head(enc, T); });
delete times.warmup;
await stage('embed', (enc) => fwd.embed(enc, T));
await stage('layer (whole)', (enc) => fwd.layer(enc, 0, fwd.resid, fwd.acts, batch, seq));
await stage('moe (router+route+experts)', (enc) => fwd.moe(enc, m.weights.layers[0]!, fwd.acts, T));
await stage('head (norm + chunked xent)', (enc) => fwd.head(enc, T));
{
  const a = fwd.acts, s = m.spec, lw = m.weights.layers[0]!;
  const { attentionForward } = await import('../src/engine/ops/attention.ts');
  const { matmulForward } = await import('../src/engine/ops/matmul.ts');
  const { routerForward, routerLogits } = await import('../src/engine/ops/router.ts');
  const { moeRoute } = await import('../src/engine/ops/moe_route.ts');
  const { EXPERT_TILE_M, expertsForward } = await import('../src/engine/ops/experts.ts');
  const q = lw.t['attn.q']!;
  await stage('q_proj', (enc) => matmulForward(enc, a.qRaw, a.xn, q.buf, null, { M: T, N: q.shape[0]!, K: q.shape[1]!, wDtype: q.dtype }));
  await stage('attention', (enc) => attentionForward(enc, a.o, a.lse, a.q, a.k, a.v, { batch, seq, nHeads: s.numHeads, nKvHeads: s.numKvHeads, dQK: s.headDim, dV: s.headDim, scale: s.attention.softmaxScale, window: null }));
  await stage('router logits', (enc) => routerLogits(enc, a.logits, a.hn, lw.t.router!.buf, T, s.hidden, s.moe.numExperts));
  const mo = s.moe;
  await stage('router select', (enc) => routerForward(enc, a.topIdx, a.topW, a.probs, a.logits, null, { T, E: mo.numExperts, K: mo.topK, scoring: mo.scoring, nGroup: mo.nGroup, topkGroup: mo.topkGroup, normTopkProb: mo.normTopkProb, routedScalingFactor: mo.routedScalingFactor }));
  await stage('moe_route', (enc) => moeRoute(enc, a.counts, a.offsets, a.slot, a.rowPair, a.tiles, a.topIdx, { T, K: mo.topK, E: mo.numExperts, tileM: EXPERT_TILE_M }));
  const ex = lw.experts!;
  await stage('experts fwd', (enc) => expertsForward(enc, a.mlpOut, a, a.hn, { gate: ex.gate.buf, up: ex.up.buf, down: ex.down.buf }, a.topW, { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles }, { T, H: s.hidden, E: mo.numExperts, K: mo.topK, IE: mo.expertIntermediate, wDtype: ex.gate.dtype }));
}
console.log(JSON.stringify({ seq, batch, ms: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, +v.toFixed(1)])) }));
