// usaf train: the seed's sparse fine-tuning method on a model folder and a dataset, with progress, a JSONL log in the
// seed's format, periodic evaluation and a final JSON summary. Every setting is a flag and also the seed's env var.

import { mkdir, appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { command, str, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openModel, QUANT_FLAGS, quantOption, storedQuantOption } from '../load-model.ts';
import { tokenizeFile } from '../dataset.ts';
import { Trainer, planSettings, type Sampling, type TrainSettings, type SampleSet } from '../../engine/train/trainer.ts';
import { assertFits, withExpertChunk } from '../../engine/plan/memory.ts';
import { runTraining } from '../../engine/train/run.ts';
import { loadTrainCheckpoint } from '../../engine/train/checkpoint-file.ts';
import { exportRun } from '../../engine/train/export-run.ts';
import { baseFolder } from './merge.ts';
import { nodeFileSink } from '../../node/file-sink.ts';
import { nodeFolder } from '../../node/folder.ts';
import { readSpec } from '../load-model.ts';
import { trainSamples, windowSamples } from '../../engine/train/samples.ts';
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
  'n-importance': { type: 'number', env: 'N_IMPORTANCE', default: 3, help: 'microbatches summed for the first selection (and each reselection with --accumulated-reselect)' },
  'frozen-cache-n': { type: 'number', env: 'FROZEN_CACHE_N', help: 'samples whose frozen-layer output is cached (default all)' },
  'eval-windows': { type: 'number', help: 'cap on windows per eval set (default all)' },
  seed: { type: 'number', env: 'SEED', default: 0, help: 'random seed (data order, importance batches)' },
  sampling: { type: 'string', env: 'SAMPLING', default: 'random', help: 'training samples: random (SEQ tokens at random positions of the stream, STEPS·MICROBATCH·ACCUM of them, as the seed) or windows (the consecutive windows evaluation scores, shuffled per epoch)' },
  'eval-split': { type: 'number', env: 'EVAL_SPLIT', default: 0, help: 'share of the documents held apart for in-domain eval (0: evaluate on the training set, as the seed)' },
  'keep-adam-state': { type: 'boolean', env: 'KEEP_ADAM_STATE', help: 'improvement over the seed: kept entries keep their Adam state at reselection' },
  'per-entry-step': { type: 'boolean', env: 'PER_ENTRY_STEP', help: 'improvement over the seed: Adam bias correction counts each active entry\'s own updates' },
  'accumulated-reselect': { type: 'boolean', env: 'ACCUMULATED_RESELECT', help: 'improvement over the seed: reselection ranks |grad| summed over N_IMPORTANCE microbatches' },
  'train-shared': { type: 'boolean', env: 'TRAIN_SHARED', help: 'also train the shared experts of the trained layers (DeepSeek-V3, Qwen2-MoE) like the routed ones' },
  out: { type: 'string', default: 'runs/latest', help: 'output folder: log.jsonl, summary.json, train-state.safetensors, export/, usaf-delta.safetensors' },
  'checkpoint-every': { type: 'number', default: 50, help: 'save a resumable checkpoint every N steps (and at the end)' },
  resume: { type: 'boolean', help: 'continue the run saved in --out' },
  'no-export': { type: 'boolean', help: 'skip the Hub-format export and the sparse delta at the end' },
  base: { type: 'string', help: 'stored 4-bit --model only: the original Hub model (folder or URL prefix) the export merges onto; without it the delta alone is written' },
  ...QUANT_FLAGS,
  'stream-frozen': { type: 'boolean', env: 'STREAM_FROZEN', help: 'keep frozen layers off the GPU: one layer-major pass reads each once from storage and caches every sample\'s (and eval window\'s) input of TRAIN_FROM' },
  'gpu-gib': { type: 'number', env: 'GPU_GIB', help: 'GPU memory to fit in, GiB: refuse (and suggest settings) when the memory plan exceeds it' },
  'expert-chunk': { type: 'number', env: 'EXPERT_CHUNK', help: '4-bit: experts per chunk of a trained layer\'s f32 scratch (same results; default: all, or the largest chunk that fits --gpu-gib and the adapter)' },
} as const;

export function defaultTrainFrom(numLayers: number): number {
  return numLayers <= 16 ? Math.floor(numLayers / 2) : numLayers - 8;
}

export const train = command('train', 'sparse fine-tuning with the seed\'s method (importance, RigL reselection, SparseAdam)', TRAIN_FLAGS, async (f) => {
  const modelDir = str(f, 'model');
  const out = String(f.out);
  await mkdir(out, { recursive: true });
  const logPath = join(out, 'log.jsonl');
  const resume = f.resume ? await loadTrainCheckpoint(nodeFolder(out)) : undefined;
  if (!resume) await writeFile(logPath, '');
  const say = (s: string) => process.stderr.write(s + '\n');

  const gpu = await nodeGpu();
  const spec = await readSpec(modelDir);
  const numLayers = spec.numLayers;
  const trainFrom = num(f, 'train-from') ?? defaultTrainFrom(numLayers);
  const trainShared = !!f['train-shared'];
  const streamFrozen = !!f['stream-frozen'] && trainFrom > 0;
  const quantizeExperts = quantOption(f) ?? (await storedQuantOption(modelDir)); // a stored 4-bit model says so itself
  const seq = num(f, 'seq')!;
  const ds = await tokenizeFile(modelDir, str(f, 'dataset'), num(f, 'eval-split')!);
  const pad = 0;
  const sampling = String(f.sampling);
  if (sampling !== 'random' && sampling !== 'windows') throw new Error(`--sampling must be random or windows, not "${sampling}"`);
  const heldout: SampleSet | null = f.heldout ? windowSamples((await tokenizeFile(modelDir, String(f.heldout))).all, seq, pad) : null;
  const microbatch = num(f, 'microbatch')!;
  const accum = num(f, 'accum')!;
  const epochs = num(f, 'epochs')!;
  const steps = epochs > 0 ? Math.max(1, Math.floor((epochs * ds.train.ids.length) / (microbatch * accum * seq))) : num(f, 'steps')!;
  // A resumed run draws its samples as it was checkpointed (runs from before --sampling existed used the windows).
  const sampled: Sampling = resume ? ((resume.settings.sampling as Sampling | undefined) ?? 'windows') : sampling;
  if (sampled !== sampling) say(`usaf train: --resume: the saved run drew its samples as ${sampled}; it goes on that way (--sampling ${sampling} ignored)`);
  const trainSet = trainSamples(ds.train, { sampling: sampled, seq, steps, microbatch, accum, seed: num(f, 'seed')! }, pad);
  // With the windows as training samples the in-domain eval (no split) reuses their frozen cache.
  const inDomain = ds.eval ? windowSamples(ds.eval, seq, pad) : sampled === 'windows' ? trainSet : windowSamples(ds.train, seq, pad);
  const settings: TrainSettings = {
    frac: num(f, 'frac')!, steps, microbatch, accum, seq, lrPeak: num(f, 'lr-peak')!, wd: num(f, 'wd')!, trainFrom,
    reselectEvery: num(f, 'reselect-every')!, evalEvery: num(f, 'eval-every')!, nImportance: num(f, 'n-importance')!,
    frozenCacheN: num(f, 'frozen-cache-n') ?? trainSet.count, seed: num(f, 'seed')!, evalWindows: num(f, 'eval-windows') ?? null,
    keepAdamState: !!f['keep-adam-state'], perEntryStep: !!f['per-entry-step'], accumulatedReselect: !!f['accumulated-reselect'], trainShared, sampling: sampled,
    gpuBytes: num(f, 'gpu-gib') !== undefined ? Math.floor(num(f, 'gpu-gib')! * 2 ** 30) : undefined,
    ...(num(f, 'expert-chunk') !== undefined ? { expertChunk: num(f, 'expert-chunk') } : {}),
  };
  // Refuse before loading anything onto the GPU (the Trainer checks again on the loaded weights).
  if (settings.gpuBytes !== undefined) {
    const ps = { ...planSettings(streamFrozen ? { ...settings, frozenCacheN: trainSet.count } : settings, trainSet.count), quantizeExperts: quantizeExperts ?? null, streamFrozen };
    assertFits(spec, withExpertChunk(spec, settings.expertChunk !== undefined ? { ...ps, expertChunk: settings.expertChunk } : ps, settings.gpuBytes), settings.gpuBytes);
  }
  const model = await openModel(gpu, modelDir, { trainFrom, quantizeExperts, trainShared, streamFrozen });
  if (resume) {
    // checkpoints from before these flags existed ran without them
    const saved: Record<string, unknown> = { trainShared: false, keepAdamState: false, perEntryStep: false, accumulatedReselect: false, ...resume.settings };
    for (const k of ['frac', 'microbatch', 'accum', 'seq', 'trainFrom', 'seed', 'trainShared', 'keepAdamState', 'perEntryStep', 'accumulatedReselect'] as const)
      if (saved[k] !== settings[k]) throw new Error(`--resume: ${k} was ${String(saved[k])} in the saved run, now ${settings[k]}; resume with the same settings`);
    // random-position samples are drawn for STEPS·MICROBATCH·ACCUM: another STEPS would be another sample set
    if (sampled === 'random' && saved.steps !== steps) throw new Error(`--resume: steps was ${String(saved.steps)} in the saved run, now ${steps}; the random-position samples depend on it: resume with the same steps`);
    // the base weights differ with 4-bit experts: the saved trained values only continue on the same base
    const was = (resume.settings.quantizeExperts as { groupSize: number } | null | undefined) ?? null;
    if ((was?.groupSize ?? null) !== (quantizeExperts?.groupSize ?? null)) throw new Error(`--resume: the saved run had ${was ? `4-bit experts (group ${was.groupSize})` : 'unquantized experts'}; resume with the same --quantize-experts / --group-size`);
  }
  const trainer = new Trainer(gpu, model.spec, model.weights, settings, trainSet);
  say(`usaf train: ${model.spec.arch}, layers ${trainFrom}-${numLayers - 1} trained, ${trainSet.count} samples of ${seq} tokens, ${steps} steps${resume ? `, resuming after step ${resume.step}` : ''}`);
  const t0 = performance.now();
  const summary = await runTraining(trainer, {
    inDomain,
    heldout,
    sink: nodeFileSink(out),
    checkpointEvery: num(f, 'checkpoint-every')!,
    settings: { ...settings, quantizeExperts: quantizeExperts ?? null, streamFrozen } as unknown as Record<string, unknown>,
    resume,
    frozenSource: streamFrozen ? { ckpt: model.ckpt, load: model.load } : undefined,
    events: {
      onLog: (r) => appendFile(logPath, JSON.stringify(r) + '\n'),
      onEval: (r) => say(`eval @${r.step}: in-domain PPL ${r.eval_ppl.toFixed(3)}${r.heldout_ppl !== null ? `, held-out PPL ${r.heldout_ppl.toFixed(3)}` : ''}`),
      onReselect: (r) => say(`reselect @${r.step}: turnover ${(r.turnover * 100).toFixed(1)} %`),
      onStep: (r) => {
        const done = r.step - (resume?.step ?? 0);
        const eta = ((performance.now() - t0) / 1000 / done) * (steps - r.step);
        say(`step ${r.step}/${steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${r.tok_s.toFixed(0)} tok/s  ETA ${eta.toFixed(0)} s${r.finite ? '' : '  (skipped: non-finite)'}`);
      },
    },
  });
  let exported: object | null = null;
  if (!f['no-export']) {
    // the original merged with the run's differences (docs/delta-format.md); a stored 4-bit run merges onto --base, or
    // writes the delta alone and says how to merge it
    const exportDir = join(out, 'export');
    const r = await exportRun(trainer, {
      loaded: model.ckpt, loadedFolder: nodeFolder(modelDir), original: f.base ? baseFolder(String(f.base)) : null,
      settings: { ...settings, quantizeExperts: quantizeExperts ?? null, streamFrozen, arch: model.spec.arch },
      deltaSink: nodeFileSink(out), mergeSink: nodeFileSink(exportDir),
    });
    const deltaPath = join(out, r.delta.path);
    if (!r.merged) say(`usaf train: ${modelDir} is a stored 4-bit model and no --base was given: only the delta was written. Merge it onto the original with\n  usaf merge --base ${r.originalSource ?? '<the original Hub model folder or URL>'} --delta ${deltaPath} --out ${exportDir}`);
    exported = { hub: r.merged ? exportDir : null, shards: r.merged?.shards.length ?? 0, delta: deltaPath, delta_bytes: r.delta.bytes };
  }
  const result = { model: modelDir, arch: model.spec.arch, settings, ...summary, frozen_cache: { hits: trainer.cache.hits, misses: trainer.cache.misses }, gpu_bytes: allocatedBytes(gpu), exported };
  await writeFile(join(out, 'summary.json'), JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result));
  return 0;
});
