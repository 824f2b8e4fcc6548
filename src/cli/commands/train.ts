// usaf train: the seed's sparse fine-tuning method on a model folder and a dataset, with progress, a JSONL log in the
// seed's format, periodic evaluation and a final JSON summary. Every setting is a flag and also the seed's env var.

import { mkdir, appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { command, str, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openModel } from '../load-model.ts';
import { tokenizeFile } from '../dataset.ts';
import { Trainer, Rng, type TrainSettings, type SampleSet } from '../../engine/train/trainer.ts';
import { windowSamples } from '../../engine/train/samples.ts';
import { allocatedBytes } from '../../engine/gpu/buffers.ts';

export const TRAIN_FLAGS = {
  model: { type: 'string', help: 'model folder (config.json, safetensors, tokenizer)' },
  dataset: { type: 'string', help: 'training data: JSONL {"text"} or {"input_ids","labels"}, or text' },
  heldout: { type: 'string', help: 'held-out set for evaluation' },
  steps: { type: 'number', env: 'STEPS', default: 180, help: 'optimizer steps' },
  epochs: { type: 'number', env: 'EPOCHS', default: 0, help: '> 0: STEPS = floor(EPOCHS · tokens / (MICROBATCH · ACCUM · SEQ))' },
  frac: { type: 'number', env: 'FRAC', default: 0.005, help: 'trained share of each selection tensor' },
  'train-from': { type: 'number', env: 'TRAIN_FROM', help: 'first trained layer (default: top 8; top half for ≤ 16 layers)' },
  microbatch: { type: 'number', env: 'MICROBATCH', default: 2, help: 'samples per microbatch' },
  accum: { type: 'number', env: 'ACCUM', default: 1, help: 'microbatches averaged per step' },
  seq: { type: 'number', env: 'SEQ', default: 512, help: 'tokens per sample' },
  'lr-peak': { type: 'number', env: 'LR_PEAK', default: 2e-4, help: 'peak learning rate' },
  wd: { type: 'number', env: 'WD', default: 0.005, help: 'L2 weight decay' },
  'reselect-every': { type: 'number', env: 'RESELECT_EVERY', default: 50, help: 'steps between reselections (0 = never)' },
  'eval-every': { type: 'number', env: 'EVAL_EVERY', default: 15, help: 'steps between evaluations (0 = only before and after)' },
  'n-importance': { type: 'number', env: 'N_IMPORTANCE', default: 3, help: 'microbatches summed for the first selection' },
  'frozen-cache-n': { type: 'number', env: 'FROZEN_CACHE_N', help: 'samples whose frozen-layer output is cached (default all)' },
  'eval-windows': { type: 'number', help: 'cap on windows per eval set (default all)' },
  seed: { type: 'number', env: 'SEED', default: 0, help: 'random seed (data order, importance batches)' },
  out: { type: 'string', default: 'runs/latest', help: 'output folder: log.jsonl, summary.json, checkpoints, export' },
} as const;

export function defaultTrainFrom(numLayers: number): number {
  return numLayers <= 16 ? Math.floor(numLayers / 2) : numLayers - 8;
}

export const train = command('train', 'sparse fine-tuning with the seed\'s method (importance, RigL reselection, SparseAdam)', TRAIN_FLAGS, async (f) => {
  const modelDir = str(f, 'model');
  const out = String(f.out);
  await mkdir(out, { recursive: true });
  const logPath = join(out, 'log.jsonl');
  await writeFile(logPath, '');
  const log = async (rec: object) => appendFile(logPath, JSON.stringify(rec) + '\n');

  const gpu = await nodeGpu();
  const spec0 = (await import('../load-model.ts')).readSpec;
  const numLayers = (await spec0(modelDir)).numLayers;
  const trainFrom = num(f, 'train-from') ?? defaultTrainFrom(numLayers);
  const model = await openModel(gpu, modelDir, { trainFrom });
  const seq = num(f, 'seq')!;
  const ds = await tokenizeFile(modelDir, str(f, 'dataset'));
  const pad = 0;
  const trainSet = windowSamples(ds.all, seq, pad);
  const heldout: SampleSet | null = f.heldout ? windowSamples((await tokenizeFile(modelDir, String(f.heldout))).all, seq, pad) : null;
  const microbatch = num(f, 'microbatch')!;
  const accum = num(f, 'accum')!;
  const epochs = num(f, 'epochs')!;
  const steps = epochs > 0 ? Math.max(1, Math.floor((epochs * ds.all.ids.length) / (microbatch * accum * seq))) : num(f, 'steps')!;
  const settings: TrainSettings = {
    frac: num(f, 'frac')!, steps, microbatch, accum, seq, lrPeak: num(f, 'lr-peak')!, wd: num(f, 'wd')!, trainFrom,
    reselectEvery: num(f, 'reselect-every')!, evalEvery: num(f, 'eval-every')!, nImportance: num(f, 'n-importance')!,
    frozenCacheN: num(f, 'frozen-cache-n') ?? trainSet.count, seed: num(f, 'seed')!, evalWindows: num(f, 'eval-windows') ?? null,
  };
  const trainer = new Trainer(gpu, model.spec, model.weights, settings, trainSet);
  const say = (s: string) => process.stderr.write(s + '\n');
  say(`usaf train: ${model.spec.arch}, layers ${trainFrom}-${numLayers - 1} trained, ${trainSet.count} samples of ${seq} tokens, ${steps} steps`);

  const evalBoth = async (step: number) => {
    const e = await trainer.evaluate(trainSet, settings.evalWindows);
    const h = heldout ? await trainer.evaluate(heldout, settings.evalWindows) : null;
    const rec = { step, eval_loss: e.loss, eval_ppl: e.ppl, heldout_loss: h?.loss ?? null, heldout_ppl: h?.ppl ?? null };
    await log(rec);
    say(`eval @${step}: in-domain PPL ${e.ppl.toFixed(3)}${h ? `, held-out PPL ${h.ppl.toFixed(3)}` : ''}`);
    return rec;
  };
  const before = await evalBoth(0);
  const impRng = new Rng((settings.seed ^ 0x9e3779b9) >>> 0);
  const impBatches = Array.from({ length: settings.nImportance }, () => Array.from({ length: microbatch }, () => Math.floor(impRng.next() * trainSet.count)));
  const t0 = performance.now();
  await trainer.init(impBatches);
  say(`selected ${trainer.trainableParams} trainable parameters (importance over ${settings.nImportance} microbatches)`);
  let last = before;
  const losses: number[] = [];
  for (let s = 1; s <= steps; s++) {
    const { record, reselect } = await trainer.trainStep();
    losses.push(record.loss);
    if (reselect) {
      await log(reselect);
      say(`reselect @${s}: turnover ${(reselect.turnover * 100).toFixed(1)} %`);
    }
    await log(record);
    const elapsed = (performance.now() - t0) / 1000;
    const eta = (elapsed / s) * (steps - s);
    say(`step ${s}/${steps}  loss ${record.loss.toFixed(4)}  lr ${record.lr.toExponential(2)}  ${record.tok_s.toFixed(0)} tok/s  ETA ${eta.toFixed(0)} s${record.finite ? '' : '  (skipped: non-finite)'}`);
    if ((settings.evalEvery > 0 && s % settings.evalEvery === 0) || s === steps) last = await evalBoth(s);
  }
  const sec = (performance.now() - t0) / 1000;
  const summary = {
    model: modelDir, arch: model.spec.arch, settings, trainable_params: trainer.trainableParams,
    ppl_before: { eval: before.eval_ppl, heldout: before.heldout_ppl }, ppl_after: { eval: last.eval_ppl, heldout: last.heldout_ppl },
    loss_first10: mean(losses.slice(0, 10)), loss_last10: mean(losses.slice(-10)), turnovers: trainer.turnovers, skipped: trainer.skipped,
    tok_s: (steps * microbatch * accum * seq) / sec, sec, frozen_cache: { hits: trainer.cache.hits, misses: trainer.cache.misses }, gpu_bytes: allocatedBytes(gpu),
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
  return 0;
});

function mean(a: number[]): number {
  return a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
}
