// Contract: generation in the worker (the Try screen): a stored model from OPFS, or a run's trained entries over it (the
// run's v2 delta made in memory from its last checkpoint, as an export makes it), on the GPU for one request; tokens and
// their text stream to `onToken` as they come. The GPU memory is given back when the request ends.

import { createGpu, type GpuContext } from '../engine/gpu/device.ts';
import { openCheckpoint } from '../engine/io/checkpoint.ts';
import type { Bytes } from '../engine/io/byte-source.ts';
import type { FileSet } from '../engine/io/folder.ts';
import { memorySink } from '../engine/io/sink.ts';
import { Generator, type GenerateResult, type SampleSettings } from '../engine/generate/index.ts';
import { DELTA_FILE } from '../engine/train/delta.ts';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.ts';
import { opfsFolder } from '../store/opfs.ts';
import type { ModelStore } from '../store/model-store.ts';
import { workerEngine } from './engine.ts';
import { beginGpuJob } from './gpu-jobs.ts';
import { storedSpec, workerModelStore } from './model-store.ts';
import { readRunRecord, runFolder } from './run-store.ts';

export interface GenerateInWorkerRequest {
  modelId: string;
  /** null: the stored model as it is. */
  runId: string | null;
  promptIds: number[];
  sampling: SampleSettings & { stopStrings: string[] };
}

/** What generation needs of the worker; the trainer provides its own (one GPU device, one store) with provideGenerateDeps. */
export interface GenerateDeps {
  gpu(): Promise<GpuContext>;
  store(): ModelStore;
}

let deps: GenerateDeps | null = null;
let ownGpu: Promise<GpuContext> | null = null;

/** The worker's GPU device and model store, for generateInWorker (without it, it makes its own). */
export function provideGenerateDeps(d: GenerateDeps): void {
  deps = d;
}

function defaultDeps(): GenerateDeps {
  const gpu = () => (ownGpu ??= createGpu());
  const store = workerModelStore(gpu);
  return { gpu, store: () => store };
}

const tokenizers = new Map<string, Promise<TextTokenizer>>();
/** Deltas made from runs' checkpoints, by run id and checkpoint step (made once: it restores the run on the GPU). */
const deltas = new Map<string, Bytes>();

/** The run's v2 delta from its last checkpoint, made in memory. */
async function runDelta(gpu: GpuContext, store: ModelStore, runId: string, modelId: string, model: FileSet): Promise<Bytes> {
  const run = await readRunRecord(runId);
  if (!run) throw new Error(`no run "${runId}"`);
  if (run.modelId !== modelId) throw new Error(`run ${run.name} was trained on ${run.modelId}, not on ${modelId}`);
  const key = `${runId}@${run.checkpointStep}`;
  const had = deltas.get(key);
  if (had) return had;
  const folder = await runFolder(runId, false);
  if (!folder) throw new Error(`run ${run.name} has no files`);
  const ckpt = await openCheckpoint(model);
  const spec = await (async () => {
    try {
      const m = await store.get(modelId);
      if (!m) throw new Error(`no stored model "${modelId}"`);
      return storedSpec(m, ckpt);
    } finally {
      await ckpt.close();
    }
  })();
  const sink = memorySink(`run ${run.name}`);
  await workerEngine.writeDelta({ gpu, spec, model, runFolder: folder, runFiles: opfsFolder(folder, runId) }, sink, null);
  const bytes = sink.bytes(DELTA_FILE);
  for (const k of deltas.keys()) if (k.startsWith(`${runId}@`)) deltas.delete(k);
  deltas.set(key, bytes);
  return bytes;
}

/**
 * Generates from the stored model `modelId`, or from run `runId`'s trained entries over it, continuing `promptIds`.
 * `onToken` gets each new id with the text it adds. Resolves with the new tokens, their text, why it stopped and the
 * speeds; an abort through `signal` resolves with what was made (stop 'aborted').
 */
export async function generateInWorker(
  req: GenerateInWorkerRequest,
  onToken: (id: number, text: string) => void,
  signal?: AbortSignal,
): Promise<GenerateResult & { text: string }> {
  const d = deps ?? (deps = defaultDeps());
  const store = d.store();
  const model = await store.get(req.modelId);
  if (!model) throw new Error(`no stored model "${req.modelId}"`);
  const files = await store.files(model.id);
  let tokP = tokenizers.get(model.id);
  if (!tokP) tokenizers.set(model.id, (tokP = loadTokenizer(files)));
  const tok = await tokP.catch((e: unknown) => {
    tokenizers.delete(model.id);
    throw e;
  });
  const decode = (ids: number[]): string => (tok.decode ? tok.decode(ids) : ids.join(' '));
  const gpu = await d.gpu();
  const delta = req.runId === null ? null : await runDelta(gpu, store, req.runId, model.id, files);
  signal?.throwIfAborted();
  const end = beginGpuJob(gpu.device);
  let gen: Generator | null = null;
  try {
    gen = await Generator.open(gpu, files, { delta, maxPositions: req.promptIds.length + req.sampling.maxNewTokens });
    const eosIds = [...new Set([...gen.eosIds, tok.eosId])];
    const tokens: number[] = [];
    let shown = '';
    const r = await gen.generate({
      ...req.sampling, promptIds: req.promptIds, eosIds, decode, signal,
      onToken: (id) => {
        tokens.push(id);
        const text = decode(tokens);
        onToken(id, text.startsWith(shown) ? text.slice(shown.length) : text);
        shown = text;
      },
    });
    return { ...r, text: decode(r.tokens) };
  } finally {
    gen?.destroy();
    end();
  }
}
