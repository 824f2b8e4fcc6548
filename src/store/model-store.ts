// Contract: the browser's model store. Tensor bytes in OPFS under store/models/<id>/ (importQ4's output: config and
// tokenizer files, shards with 4-bit experts and bf16 other tensors, index), written with synchronous access handles;
// the manifest (StoredModel) in IndexedDB, written last: a model is listed only once every part is committed. An
// interrupted import resumes (shards already stored are kept); deleting removes the manifest first, then the files.
// Models stored by earlier versions (Hub files copied into models/<id>/) stay listed and usable as 'hub-copy'.

import type { Checkpoint } from '../engine/io/checkpoint.ts';
import { openCheckpoint } from '../engine/io/checkpoint.ts';
import type { FileSet } from '../engine/io/folder.ts';
import type { FileSink } from '../engine/io/sink.ts';
import {
  allTensors, archInfo, countParams, detectExpertLayout, parseConfig, withExpertLayout, type ModelSpec,
} from '../engine/model/index.ts';
import { storedQ4Info } from '../engine/quant/stored-q4.ts';
import type { ImportProgress, ModelFacts, ModelSource, StoredModel } from './records.ts';
import { checkFits, shardCap, type StorageEstimateLike } from './fits.ts';
import { listLegacy, LEGACY_DIR, legacyFolder } from './legacy.ts';
import type { ManifestKv } from './manifests.ts';
import { dirUnder, entries, folderBytes, opfsFolder, removeEntry } from './opfs.ts';
import { DEMO_MODEL_ID, describeSource, readJson, type DescribedSource } from './sources.ts';
import { PARTIAL_SUFFIX, syncAccessSink } from './sync-sink.ts';

export const STORE_DIR = 'store/models';
export const GROUP_SIZE = 128;
/** Files copied beside the weights when the source has them. */
export const COPY_FILES: readonly string[] = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'added_tokens.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json',
  'README.md', 'LICENSE',
];

/** What importQ4 reports. */
export type { ImportProgress as Q4Progress } from '../engine/quant/import-q4.ts';
import type { ImportProgress as Q4Progress } from '../engine/quant/import-q4.ts';

export interface ImportJob {
  spec: ModelSpec;
  src: Checkpoint;
  folder: FileSet;
  sink: FileSink;
  resumeFrom: FileSet;
  groupSize: number;
  maxShardBytes: number;
  copyFiles: readonly string[];
  /** Throwing from it interrupts the import (the shard being written is discarded). */
  onProgress(p: Q4Progress): void;
}

/** The quantizing importer (importQ4 on the GPU in the worker; a fake in unit tests). */
export interface Importer {
  /** Bytes the import writes besides the copied files, from the headers alone. */
  size(spec: ModelSpec, src: Checkpoint, opts: { groupSize: number; maxShardBytes: number }): number;
  run(job: ImportJob): Promise<void>;
}

export interface StoreDeps {
  root(): Promise<FileSystemDirectoryHandle>;
  manifests: ManifestKv;
  importer: Importer;
  estimate(): Promise<StorageEstimateLike>;
}

export function safeId(id: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,80}$/.test(id)) throw new Error(`invalid model id ${JSON.stringify(id)}`);
  return id;
}

export function modelFacts(spec: ModelSpec): ModelFacts {
  return {
    layers: spec.numLayers, hidden: spec.hidden, experts: spec.moe.numExperts, topK: spec.moe.topK,
    expertIntermediate: spec.moe.expertIntermediate, heads: spec.numHeads, kvHeads: spec.numKvHeads, headDim: spec.headDim,
    vocab: spec.vocab, maxPos: spec.maxPos, sharedExperts: spec.moe.sharedExperts?.count ?? 0,
    denseLayers: spec.layers.filter((l) => l.mlp === 'dense').length, dtype: spec.dtype,
  };
}

/** The spec of a stored model over its opened checkpoint (a 4-bit store names its expert layout in its metadata). */
export function storedSpec(model: StoredModel, ckpt: Checkpoint): ModelSpec {
  const q4 = storedQ4Info(ckpt);
  return withExpertLayout(parseConfig(model.config), q4 ? q4.expertLayout : detectExpertLayout(ckpt.tensors.keys()));
}

/** A model stored with 4-bit experts is trained, evaluated and exported with them: QUANTIZE_EXPERTS on, its group size. */
export function impliedSettings<S extends { quantizeExperts: boolean; quantGroupSize: number }>(s: S, model: StoredModel): S {
  return model.storage === 'q4' && model.groupSize ? { ...s, quantizeExperts: true, quantGroupSize: model.groupSize } : s;
}

/** Every file below `dir` with its size ('/'-separated paths, sorted). */
async function listFiles(dir: FileSystemDirectoryHandle, prefix = ''): Promise<{ path: string; bytes: number }[]> {
  const out: { path: string; bytes: number }[] = [];
  for await (const [name, h] of entries(dir)) {
    if (h.kind === 'file') out.push({ path: prefix + name, bytes: (await (h as FileSystemFileHandle).getFile()).size });
    else out.push(...(await listFiles(h as FileSystemDirectoryHandle, `${prefix}${name}/`)));
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

const abortError = (): DOMException => new DOMException('import cancelled', 'AbortError');

export class ModelStore {
  constructor(private readonly deps: StoreDeps) {}

  private async storeDir(create: boolean): Promise<FileSystemDirectoryHandle | null> {
    return dirUnder(await this.deps.root(), STORE_DIR, create);
  }

  private async modelDir(id: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
    return dirUnder(await this.deps.root(), `${STORE_DIR}/${safeId(id)}`, create);
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Complete models: the store's manifests, then earlier versions' copies whose id the store does not use. */
  async list(): Promise<StoredModel[]> {
    const stored = await this.deps.manifests.all();
    const ids = new Set(stored.map((m) => m.id));
    const legacy = (await listLegacy(await this.deps.root())).filter((m) => !ids.has(m.id));
    return [...stored, ...legacy].sort((a, b) => Number(b.builtin) - Number(a.builtin) || a.importedAt - b.importedAt);
  }

  async get(id: string): Promise<StoredModel | null> {
    const m = await this.deps.manifests.get(safeId(id));
    if (m) return m;
    return (await listLegacy(await this.deps.root())).find((x) => x.id === id) ?? null;
  }

  /** The stored model's files, for the engine (checkpoint, tokenizer). */
  async files(id: string): Promise<FileSet> {
    const m = await this.get(id);
    if (!m) throw new Error(`no stored model "${id}"`);
    if (m.storage === 'hub-copy') return legacyFolder(await this.deps.root(), id);
    const dir = await this.modelDir(id, false);
    if (!dir) throw new Error(`stored model "${id}" has lost its files (the browser may have evicted them): delete it and import it again`);
    return opfsFolder(dir, id);
  }

  /** Unlists the model (manifest first), then frees its files; an earlier version's copy is removed the same way. */
  async delete(id: string): Promise<void> {
    safeId(id);
    const m = await this.get(id);
    if (m?.storage === 'hub-copy') {
      const legacy = await dirUnder(await this.deps.root(), LEGACY_DIR, false);
      if (legacy) await removeEntry(legacy, id);
      return;
    }
    await this.deps.manifests.del(id);
    const dir = await this.storeDir(false);
    if (dir) await removeEntry(dir, id);
  }

  /** Bytes of every model file, the store's and earlier versions' (unfinished imports included). */
  async bytes(): Promise<number> {
    const root = await this.deps.root();
    let n = 0;
    for (const path of [STORE_DIR, LEGACY_DIR]) {
      const dir = await dirUnder(root, path, false);
      if (dir) n += await folderBytes(dir);
    }
    return n;
  }

  // -------------------------------------------------------------------------------------------
  // Import

  private async resolve(source: ModelSource, appBase: string): Promise<DescribedSource> {
    if (source.kind !== 'stored') return describeSource(source, appBase);
    const old = await this.get(source.id);
    if (!old || old.storage !== 'hub-copy') throw new Error(`"${source.id}" is not a model stored by an earlier version`);
    return {
      folder: await legacyFolder(await this.deps.root(), old.id), id: `${old.id}-4bit`.slice(0, 80), name: `${old.name} (4-bit)`,
      sourceText: `${old.source}, converted from the copy stored by an earlier version`,
    };
  }

  async import(source: ModelSource, appBase: string, onProgress: (p: ImportProgress) => void, signal: AbortSignal): Promise<StoredModel> {
    const progress: ImportProgress = {
      phase: 'checking', file: '', bytesDone: 0, bytesTotal: 0, bytesRead: 0, tensorsDone: 0, tensorsTotal: 0, etaSeconds: null, bytesResumed: 0,
    };
    onProgress({ ...progress });
    const src = await this.resolve(source, appBase);
    const have = await this.deps.manifests.get(src.id);
    if (have) return have;

    const config = await readJson(src.folder, 'config.json');
    if (config === undefined) throw new Error(`no config.json in ${src.folder.name}: choose the model's folder (Hugging Face layout)`);
    let spec = parseConfig(config);
    const ckpt = await openCheckpoint(src.folder);
    try {
      if (storedQ4Info(ckpt)) throw new Error(`${src.folder.name} holds a model stored in 4 bits already (usaf import); import the original Hub files`);
      spec = withExpertLayout(spec, detectExpertLayout(ckpt.tensors.keys()));
      const missing = allTensors(spec).filter((t) => !ckpt.tensors.has(t.name)).map((t) => t.name);
      if (missing.length) throw new Error(`${missing.length} tensor(s) the config implies are not in the checkpoint, e.g. ${missing.slice(0, 3).join(', ')}`);
      signal.throwIfAborted();
      return await this.quantize(src, config as Record<string, unknown>, spec, ckpt, progress, onProgress, signal, source.kind === 'demo');
    } finally {
      await ckpt.close();
    }
  }

  private async quantize(
    src: DescribedSource, config: Record<string, unknown>, spec: ModelSpec, ckpt: Checkpoint, progress: ImportProgress,
    onProgress: (p: ImportProgress) => void, signal: AbortSignal, builtin: boolean,
  ): Promise<StoredModel> {
    const { importer } = this.deps;
    const groupSize = GROUP_SIZE;
    const maxShardBytes = shardCap(importer.size(spec, ckpt, { groupSize, maxShardBytes: Number.MAX_SAFE_INTEGER }));
    let copied = 0;
    for (const f of COPY_FILES) {
      const s = await src.folder.open(f);
      if (s) copied += await s.size();
      await s?.close?.();
    }
    const needed = importer.size(spec, ckpt, { groupSize, maxShardBytes }) + copied;
    // What an interrupted import of this model already stored counts as available.
    const before = await this.modelDir(src.id, false);
    const present = before ? await folderBytes(before) : 0;
    checkFits(Math.max(0, needed - present), await this.deps.estimate(), `"${src.name}"`);
    signal.throwIfAborted();

    const dir = (await this.modelDir(src.id, true))!;
    for await (const [name] of entries(dir)) if (name.endsWith(PARTIAL_SUFFIX)) await removeEntry(dir, name);
    const inner = syncAccessSink(dir, src.id);
    let writing = false;
    const sink: FileSink = {
      name: inner.name,
      write: async (path, chunks) => {
        writing = true;
        try {
          await inner.write(path, chunks);
        } finally {
          writing = false;
        }
      },
    };
    progress.phase = 'importing';
    const t0 = performance.now();
    await importer.run({
      spec, src: ckpt, folder: src.folder, sink, resumeFrom: opfsFolder(dir, src.id), groupSize, maxShardBytes, copyFiles: COPY_FILES,
      onProgress: (p) => {
        if (signal.aborted) throw abortError();
        // tensors reported outside a sink write are in shards an earlier import stored
        if (!writing) progress.bytesResumed += p.bytes - progress.bytesDone;
        progress.bytesDone = p.bytes;
        progress.bytesTotal = p.totalBytes;
        progress.tensorsDone = p.tensors;
        progress.tensorsTotal = p.totalTensors;
        progress.bytesRead = p.bytesRead;
        if (p.source) progress.file = p.source;
        const rate = (p.bytes - progress.bytesResumed) / Math.max(1e-3, (performance.now() - t0) / 1000);
        progress.etaSeconds = rate > 0 ? (p.totalBytes - p.bytes) / rate : null;
        onProgress({ ...progress });
      },
    });
    signal.throwIfAborted();

    progress.phase = 'verifying';
    onProgress({ ...progress });
    const files = await listFiles(dir);
    const check = await openCheckpoint(opfsFolder(dir, src.id));
    try {
      const q4 = storedQ4Info(check);
      if (!q4 || q4.groupSize !== groupSize) throw new Error(`the import of "${src.name}" did not produce a 4-bit store`);
    } finally {
      await check.close();
    }
    const record: StoredModel = {
      id: src.id, storage: 'q4', groupSize, name: src.name, arch: spec.arch, archDisplay: archInfo(spec.arch).displayName,
      facts: modelFacts(spec), params: countParams(spec), bytes: files.reduce((n, f) => n + f.bytes, 0), files,
      hasTokenizer: files.some((f) => f.path === 'tokenizer.json'), source: src.sourceText, builtin, importedAt: Date.now(), config,
    };
    await this.deps.manifests.set(src.id, record); // last: from here on the model is listed
    progress.phase = 'done';
    progress.etaSeconds = 0;
    onProgress({ ...progress });
    return record;
  }
}

export { DEMO_MODEL_ID };
