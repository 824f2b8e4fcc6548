// The lowest trained layer's input gradient feeds nothing (the layers below are frozen), so its backward stops at the
// router's and experts' weight gradients: no attention backward, no input gradients (train/backward.ts inputGradsNeeded).
// Against the full backward of the same pass (inputGrad: true) on three families' fixtures (GQA with q/k norm; MLA with a
// dense first layer and trained shared experts; gated shared experts with biases): every router, routed-expert and
// shared-expert gradient of every trained layer is bit-identical, and the attention backward runs only above the lowest
// trained MoE layer.
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { countCalls, countsBetween } from '../../src/engine/gpu/cost.ts';
import { createBuffer, readF32 } from '../../src/engine/gpu/buffers.ts';
import { decodeInt } from '../../src/engine/io/dtype.ts';
import { openSafetensors } from '../../src/engine/io/safetensors.ts';
import type { Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { TrainGraph } from '../../src/engine/train/graph.ts';
import { nextTokenTargets } from '../../src/engine/train/forward.ts';
import type { ExpertGradMode, FrozenGrads } from '../../src/engine/train/backward.ts';
import { sharedExpertTensors } from '../../src/engine/train/shared-expert.ts';
import { fileSource } from '../../src/node/file-source.ts';

const opened: Checkpoint[] = [];
afterAll(async () => {
  for (const c of opened.splice(0)) await c.close();
});

async function inputIds(fix: string): Promise<Uint32Array> {
  const ref = await openSafetensors(fileSource(`${fix}/reference.safetensors`));
  const ids = Uint32Array.from(decodeInt('I32', await ref.readTensor('input_ids')) as ArrayLike<number>);
  await ref.source.close?.();
  return ids;
}

const cases = [
  { family: 'qwen3_moe', trainFrom: 2, trainShared: false },
  { family: 'deepseek_v3', trainFrom: 0, trainShared: true }, // layer 0 dense: its backward is skipped whole
  { family: 'qwen2_moe', trainFrom: 1, trainShared: true },
];

describe('backward of the lowest trained layer', () => {
  for (const c of cases) {
    it(`${c.family} (trained from layer ${c.trainFrom}): trained gradients bit-identical to the full backward, less work`, async () => {
      const FIX = `test/fixtures/${c.family}`;
      const gpu = await nodeGpu({ fresh: true });
      const counts = countCalls(gpu.device);
      const m = await openModel(gpu, FIX, { trainFrom: c.trainFrom, trainShared: c.trainShared });
      opened.push(m.ckpt);
      const s = m.spec;
      const [batch, seq] = [2, 24];
      const ids = (await inputIds(FIX)).subarray(0, batch * seq);
      const g = new TrainGraph(gpu, s, m.weights, c.trainFrom, batch * seq);
      const { numExperts: E, expertIntermediate: IE } = s.moe;
      const H = s.hidden;
      const moe = g.trained.filter((L) => s.layers[L]!.mlp === 'moe');
      const lowest = g.trained.indexOf(moe[0]!);
      expect(lowest).toBe(c.family === 'deepseek_v3' ? 1 : 0);

      const run = async (inputGrad: boolean) => {
        const zero = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
        const modes: ExpertGradMode[] = g.trained.map((L) =>
          s.layers[L]!.mlp === 'moe' ? { kind: 'dense', dGate: zero('dGate', E * IE * H), dUp: zero('dUp', E * IE * H), dDown: zero('dDown', E * H * IE), accumulate: true } : { kind: 'none' });
        const dRouters = g.trained.map((L) => (s.layers[L]!.mlp === 'moe' ? zero('dRouter', E * H) : null));
        const frozen: FrozenGrads = new Map();
        if (c.trainShared) for (const L of g.trained) for (const e of sharedExpertTensors(s, L)) frozen.set(e.name, zero(e.name, e.shape.reduce((a, b) => a * b, 1)));
        const before = counts.now();
        await g.pass(ids, batch, seq, { targets: nextTokenTargets(ids, batch, seq), dRouters, modes, frozenGrads: frozen, inputGrad });
        const used = countsBetween(before, counts.now());
        const bufs = [...modes.flatMap((x) => (x.kind === 'dense' ? [x.dGate, x.dUp, x.dDown] as GPUBuffer[] : [])), ...dRouters.filter((x) => x !== null), ...frozen.values()];
        const grads = await Promise.all(bufs.map((b) => readF32(gpu, b)));
        return { used, grads, frozen: frozen.size };
      };
      const full = await run(true);
      const skip = await run(false);
      expect(skip.grads.length).toBe(4 * moe.length + full.frozen);
      if (c.trainShared) expect(full.frozen).toBeGreaterThanOrEqual(3 * moe.length);
      for (const [i, a] of full.grads.entries()) {
        expect(a.some((x) => x !== 0), `gradient ${i} is all zero`).toBe(true);
        expect(Buffer.from(skip.grads[i]!.buffer).equals(Buffer.from(a.buffer)), `gradient ${i} differs`).toBe(true);
      }
      const n = (u: typeof full.used, k: string) => u.kernels.get(`backward\t${k}`)?.dispatches ?? 0;
      const above = g.trained.length - 1 - lowest; // trained layers above the lowest MoE one
      for (const k of ['attention.backward_dkdv', 'attention.backward_dq']) {
        expect(n(full.used, k), k).toBe(g.trained.length);
        expect(n(skip.used, k), k).toBe(above);
      }
      expect(n(skip.used, 'router.backward')).toBe(moe.length);
      expect(skip.used.dispatches).toBeLessThan(full.used.dispatches);
      expect(skip.used.flops).toBeLessThan(full.used.flops);
    });
  }
});
