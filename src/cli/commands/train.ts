// usaf train: the seed's sparse fine-tuning method on a model folder and a dataset, with progress, a JSONL log in the
// seed's format, periodic evaluation and a final JSON summary. Every setting is a flag and an env var, both made from the
// engine's settings table (settings-table.ts); the run is set up by engine/train/setup.ts, as in the app. Every setting
// is checked before the GPU is touched; a resume is refused unless it continues the same run (setup.ts checkResume).

import { mkdir, appendFile, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { command, str } from '../command.ts';
import { UsageError, type FlagSpec } from '../args.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openModel, storedQuantOption, readSpec } from '../load-model.ts';
import { readDataset } from '../dataset.ts';
import { byRecord } from '../../data/build.ts';
import { Trainer } from '../../engine/train/trainer.ts';
import { runTraining } from '../../engine/train/run.ts';
import { loadTrainCheckpoint } from '../../engine/train/checkpoint-file.ts';
import { exportRun } from '../../engine/train/export-run.ts';
import { baseFolder } from './merge.ts';
import { nodeFileSink, removeOrphanTemps } from '../../node/file-sink.ts';
import { nodeFolder } from '../../node/folder.ts';
import { bytesText, planMemory } from '../../engine/plan/memory.ts';
import { allocatedBytes, peakAllocatedBytes } from '../../engine/gpu/buffers.ts';
import { envName, flagName, rangeText, resolveTrainFrom, RUN_SETTINGS, SETTINGS, type AnySettingSpec, type Settings } from '../../engine/train/settings-table.ts';
import { checkFits, checkResume, cliName, modelProblems, padIdOf, readSettings, SAMPLE_RULE_TEXT, savedSettings, SettingsError, setupRun } from '../../engine/train/setup.ts';

/** A setting of the table as a flag: --<flag> (env var), its help, range and default from the table. */
function settingFlag(s: AnySettingSpec): FlagSpec {
  const auto = s.kind !== 'bool' && s.kind !== 'choice' && s.auto ? `; default auto: ${s.auto.text}` : '';
  const special = s.kind !== 'bool' && s.kind !== 'choice' && s.special ? `; ${s.special.value}: ${s.special.text}` : '';
  const flag: FlagSpec = { type: s.kind === 'bool' ? 'boolean' : 'number', env: envName(s), help: `${s.description} [${rangeText(s)}${special}${auto}]` };
  if (s.kind !== 'bool' && s.default !== null) flag.default = s.default;
  return flag;
}

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'model folder (config.json, safetensors, tokenizer)' },
  dataset: { type: 'string', help: 'training data: JSONL {"text"}, {"input_ids","labels"}, {"messages"}, {"prompt","completion"} or Alpaca (JSONL or a .json list), or text' },
  heldout: { type: 'string', help: 'held-out set for evaluation' },
  ...Object.fromEntries([...SETTINGS, ...RUN_SETTINGS].map((s) => [flagName(s), settingFlag(s)])),
  out: { type: 'string', default: 'runs/latest', help: 'output folder: log.jsonl, summary.json, train-state.safetensors, export/, usaf-delta.safetensors' },
  resume: { type: 'boolean', help: 'continue the run saved in --out (refused, each difference listed, unless the settings that change the math and the data are the same)' },
  'no-export': { type: 'boolean', help: 'skip the Hub-format export and the sparse delta at the end' },
  base: { type: 'string', help: 'stored 4-bit --model only: the original Hub model (folder or URL prefix) the export merges onto; without it the delta alone is written' },
};

/** TRAIN_FROM's default for a model of `numLayers` layers (settings-table.ts resolveTrainFrom). */
export function defaultTrainFrom(numLayers: number): number {
  return resolveTrainFrom({ trainFrom: null }, numLayers);
}

/** The settings the flags and env vars give, each checked against the table; a UsageError names every bad one. */
export function trainSettingsFromFlags(f: Record<string, unknown>): ReturnType<typeof readSettings> {
  try {
    return readSettings((s) => f[flagName(s)], cliName);
  } catch (e) {
    if (e instanceof SettingsError) throw new UsageError(`train: ${e.message.split('\n').join('; ')}`);
    throw e;
  }
}

export const train = command('train', 'sparse fine-tuning with the seed\'s method (importance, RigL reselection, SparseAdam)', TRAIN_FLAGS, async (f) => {
  const modelDir = str(f, 'model');
  const datasetFile = str(f, 'dataset');
  const read = trainSettingsFromFlags(f);
  const runSettings = read.run;
  let userSettings: Settings = read.settings;
  const out = String(f.out);
  const say = (s: string) => process.stderr.write(s + '\n');

  const spec = await readSpec(modelDir);
  const problems = modelProblems(userSettings, spec, cliName);
  if (problems.length) throw new UsageError(`train: ${problems.join('; ')}`);
  const stored = await storedQuantOption(modelDir); // a stored 4-bit model says so itself
  if (stored) userSettings = { ...userSettings, quantizeExperts: true, quantGroupSize: stored.groupSize };
  // token ids are checked against config.json's vocab_size, with or without a tokenizer
  const ds = await readDataset(modelDir, datasetFile, { evalFraction: runSettings.evalSplit, vocabSize: spec.vocab });
  const held = f.heldout ? await readDataset(modelDir, String(f.heldout), { vocabSize: spec.vocab }) : null;
  const config = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const resume = f.resume ? await loadTrainCheckpoint(nodeFolder(out)) : undefined;

  const setup = {
    settings: userSettings, run: runSettings, spec, padId: padIdOf(ds.eosId, config),
    data: { train: ds.train, eval: ds.eval, heldout: held?.all ?? null, pretokenized: byRecord(ds.format) },
  };
  // the data and a resume checked before the GPU is touched (the adapter's buffer limit only caps the frozen cache)
  const checked = setupRun({ ...setup, maxBufferSize: null });
  if (resume) for (const w of checkResume(savedSettings(resume.settings), checked.checkpoint)) say(`usaf train: --resume: ${w}`);
  const gpu = await nodeGpu();
  const run = setupRun({ ...setup, maxBufferSize: gpu.info.maxBufferSize });
  const settings = run.train;
  const steps = run.steps;
  const quantizeExperts = run.quant ?? undefined;
  checkFits(spec, run); // refuse before loading anything onto the GPU (the Trainer checks again on the loaded weights)
  if (run.load.hostExperts) say(`usaf train: the trained layers' 4-bit experts stay in host memory (${bytesText(planMemory(spec, run.plan).hostVisible)}), copied to the GPU as each layer runs: --gpu-gib fits no other way (same results, slower steps)`);

  await mkdir(out, { recursive: true });
  const logPath = join(out, 'log.jsonl');
  if (resume) {
    // the log as of the checkpoint: steps an interrupted session logged after it are done again, not kept twice
    await writeFile(logPath, resume.log.map((r) => JSON.stringify(r) + '\n').join(''));
    const removed = await removeOrphanTemps(out);
    if (removed.length) say(`usaf train: --resume: removed ${removed.length} unfinished file(s) of the interrupted session: ${removed.join(', ')}`);
  } else await writeFile(logPath, '');

  const model = await openModel(gpu, modelDir, { trainFrom: run.trainFrom, quantizeExperts, trainShared: !!settings.trainShared, streamFrozen: run.streamed, hostExperts: !!run.load.hostExperts });
  const trainer = new Trainer(gpu, model.spec, model.weights, settings, run.trainSet);
  say(`usaf train: ${model.spec.arch}, layers ${run.trainFrom}-${spec.numLayers - 1} trained, ${run.trainSet.count} samples of ${settings.seq} tokens (${SAMPLE_RULE_TEXT[run.rule]}), ${steps} steps${resume ? `, resuming after step ${resume.step}` : ''}`);
  const t0 = performance.now();
  const summary = {
    samples: { rule: run.rule, count: run.trainSet.count, text: SAMPLE_RULE_TEXT[run.rule] },
    ...(await runTraining(trainer, {
      inDomain: run.inDomain,
      heldout: run.heldout,
      sink: nodeFileSink(out),
      checkpointEvery: runSettings.checkpointEvery,
      settings: run.checkpoint as unknown as Record<string, unknown>,
      resume,
      frozenSource: run.streamed ? { ckpt: model.ckpt, load: model.load } : undefined,
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
    })),
  };
  let exported: object | null = null;
  if (!f['no-export']) {
    // the original merged with the run's differences (docs/delta-format.md); a stored 4-bit run merges onto --base, or
    // writes the delta alone and says how to merge it
    const exportDir = join(out, 'export');
    const r = await exportRun(trainer, {
      loaded: model.ckpt, loadedFolder: nodeFolder(modelDir), original: f.base ? baseFolder(String(f.base)) : null,
      settings: { ...run.checkpoint, streamFrozen: run.streamed, arch: model.spec.arch },
      deltaSink: nodeFileSink(out), mergeSink: nodeFileSink(exportDir),
    });
    const deltaPath = join(out, r.delta.path);
    if (r.unmergeable) say(`usaf train: only the delta was written: ${r.unmergeable}`);
    else if (!r.merged) say(`usaf train: ${modelDir} is a stored 4-bit model and no --base was given: only the delta was written. Merge it onto the original with\n  usaf merge --base ${r.originalSource ?? '<the original Hub model folder or URL>'} --delta ${deltaPath} --out ${exportDir}`);
    exported = { hub: r.merged ? exportDir : null, shards: r.merged?.shards.length ?? 0, delta: deltaPath, delta_bytes: r.delta.bytes };
  }
  const result = { model: modelDir, arch: model.spec.arch, settings, ...summary, frozen_cache: { hits: trainer.cache.hits, misses: trainer.cache.misses }, gpu_bytes: allocatedBytes(gpu), gpu_peak_bytes: peakAllocatedBytes(gpu), exported };
  await writeFile(join(out, 'summary.json'), JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result));
  return 0;
});
