// Contract: models in the Origin Private File System under models/<id>/ (Hub layout, as imported) plus a record
// models/<id>/usaf-model.json written last. Imports check the config and every shard header first, then copy in place
// so that an interrupted or cancelled import resumes where it stopped.

import type { ByteSource } from '../engine/io/byte-source.ts';
import { INDEX_FILE, openCheckpoint, SINGLE_FILE } from '../engine/io/checkpoint.ts';
import { fileMapFolder, urlFolder, type FileSet } from '../engine/io/folder.ts';
import {
  allTensors, archInfo, countParams, detectExpertLayout, parseConfig, withExpertLayout, type ModelSpec,
} from '../engine/model/index.ts';
import { dirAt, entries, fileAt, folderBytes, InPlaceWriter, opfsFolder, readText, removeEntry, writeWhole } from './opfs.ts';
import { shortHash, slug } from './ids.ts';
import type { ImportProgress, ModelFacts, ModelSource, StoredModel } from './protocol.ts';

export const DEMO_MODEL_ID = 'usaf-demo-moe';
const MODELS = 'models';
const RECORD = 'usaf-model.json';
const PARTIAL = 'usaf-import.json';
/** Optional files copied when present, beside config.json and the weights. */
const EXTRA_FILES = [
  'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja', 'README.md', 'LICENSE',
];
const CHUNK = 8 << 20;

// ---------------------------------------------------------------------------------------------
// Reading

export async function listStoredModels(): Promise<StoredModel[]> {
  const dir = await dirAt(MODELS, false);
  if (!dir) return [];
  const out: StoredModel[] = [];
  for await (const [name, h] of entries(dir)) {
    if (h.kind !== 'directory') continue;
    const text = await readText(h as FileSystemDirectoryHandle, RECORD);
    if (!text) continue; // an import that has not finished
    try {
      out.push(JSON.parse(text) as StoredModel);
    } catch {
      console.warn(`models/${name}/${RECORD} is not valid JSON; ignored`);
    }
  }
  return out.sort((a, b) => Number(b.builtin) - Number(a.builtin) || a.importedAt - b.importedAt);
}

export async function storedModel(id: string): Promise<StoredModel | null> {
  const dir = await dirAt(`${MODELS}/${safeId(id)}`, false);
  const text = dir ? await readText(dir, RECORD) : null;
  return text ? (JSON.parse(text) as StoredModel) : null;
}

/** The stored model's files, for the engine (checkpoint, tokenizer). */
export async function modelFiles(id: string): Promise<FileSet> {
  const dir = await dirAt(`${MODELS}/${safeId(id)}`, false);
  if (!dir || !(await readText(dir, RECORD))) throw new Error(`no stored model "${id}"`);
  return opfsFolder(dir, id);
}

export async function deleteStoredModel(id: string): Promise<void> {
  const dir = await dirAt(MODELS, false);
  if (dir) await removeEntry(dir, safeId(id));
}

export async function modelsBytes(): Promise<number> {
  const dir = await dirAt(MODELS, false);
  return dir ? folderBytes(dir) : 0;
}

function safeId(id: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,80}$/.test(id)) throw new Error(`invalid model id ${JSON.stringify(id)}`);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Facts

export function modelFacts(spec: ModelSpec): ModelFacts {
  return {
    layers: spec.numLayers,
    hidden: spec.hidden,
    experts: spec.moe.numExperts,
    topK: spec.moe.topK,
    expertIntermediate: spec.moe.expertIntermediate,
    heads: spec.numHeads,
    kvHeads: spec.numKvHeads,
    headDim: spec.headDim,
    vocab: spec.vocab,
    maxPos: spec.maxPos,
    sharedExperts: spec.moe.sharedExperts?.count ?? 0,
    denseLayers: spec.layers.filter((l) => l.mlp === 'dense').length,
    dtype: spec.dtype,
  };
}

// ---------------------------------------------------------------------------------------------
// Import

interface Plan {
  id: string;
  name: string;
  sourceText: string;
  builtin: boolean;
  folder: FileSet;
  config: Record<string, unknown>;
  spec: ModelSpec;
  files: { path: string; bytes: number; source: ByteSource; tensorEnds: number[] }[];
}

/** Drops the folder name a directory picker puts in front of every path ("mymodel/config.json" → "config.json"). */
export function stripCommonFolder(paths: string[]): (p: string) => string {
  const firsts = new Set(paths.map((p) => (p.includes('/') ? p.split('/')[0] : '')));
  if (firsts.size !== 1 || firsts.has('')) return (p) => p;
  const [first] = firsts;
  return (p) => p.slice(first!.length + 1);
}

/**
 * urlFolder, except that an HTML page answered for a file that is not HTML counts as missing: single-page-app hosts
 * (and dev servers) answer unknown paths with index.html and status 200.
 */
function guardedUrlFolder(prefix: string): FileSet {
  const inner = urlFolder(prefix);
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  return {
    name: inner.name,
    open: async (relPath) => {
      if (!/\.html?$/i.test(relPath)) {
        const url = base + relPath.split('/').map(encodeURIComponent).join('/');
        const head = await fetch(url, { method: 'HEAD' });
        if (head.status === 404 || head.status === 410) return null;
        if ((head.headers.get('content-type') ?? '').toLowerCase().startsWith('text/html')) return null;
      }
      return inner.open(relPath);
    },
  };
}

function describeSource(source: ModelSource, appBase: string): { folder: FileSet; id: string; name: string; sourceText: string } {
  switch (source.kind) {
    case 'demo':
      return { folder: guardedUrlFolder(new URL(`models/${DEMO_MODEL_ID}/`, appBase).href), id: DEMO_MODEL_ID, name: DEMO_MODEL_ID, sourceText: 'built-in demo' };
    case 'url': {
      let url: URL;
      try {
        url = new URL(source.url);
      } catch {
        throw new Error(`"${source.url}" is not a URL`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`only http(s) URLs can be imported, not ${url.protocol}`);
      const name = source.name || url.pathname.split('/').filter(Boolean).slice(-3).join('-') || url.host;
      return { folder: guardedUrlFolder(url.href), id: `${slug(name)}-${shortHash(url.href)}`, name, sourceText: url.href };
    }
    case 'files': {
      const strip = stripCommonFolder(source.files.map((f) => f.path));
      const map = new Map(source.files.map((f) => [strip(f.path), f.file]));
      const key = [...map].map(([p, b]) => `${p}:${b.size}`).sort().join('|');
      return { folder: fileMapFolder(map, source.name), id: `${slug(source.name)}-${shortHash(key)}`, name: source.name, sourceText: `folder "${source.name}"` };
    }
  }
}

async function readJson(folder: FileSet, path: string): Promise<unknown | undefined> {
  const src = await folder.open(path);
  if (!src) return undefined;
  const bytes = await src.read(0, await src.size());
  await src.close?.();
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${path} in ${folder.name} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Checks the source (config, tokenizer, every shard header, every tensor the spec expects) and lists what to copy. */
async function planImport(source: ModelSource, appBase: string): Promise<Plan> {
  const { folder, id, name, sourceText } = describeSource(source, appBase);
  const config = await readJson(folder, 'config.json');
  if (config === undefined) throw new Error(`no config.json in ${folder.name}: choose the model's folder (Hugging Face layout)`);
  let spec = parseConfig(config);
  const ckpt = await openCheckpoint(folder);
  try {
    spec = withExpertLayout(spec, detectExpertLayout(ckpt.tensors.keys()));
    const missing = allTensors(spec).filter((t) => !ckpt.tensors.has(t.name)).map((t) => t.name);
    if (missing.length) {
      throw new Error(`${missing.length} tensor(s) the config implies are not in the checkpoint, e.g. ${missing.slice(0, 3).join(', ')}`);
    }
    const files: Plan['files'] = [];
    const add = async (path: string, tensorEnds: number[] = []) => {
      const src = await folder.open(path);
      if (src) files.push({ path, bytes: await src.size(), source: src, tensorEnds });
    };
    await add('config.json');
    for (const f of EXTRA_FILES) await add(f);
    if (!ckpt.files.has(SINGLE_FILE)) await add(INDEX_FILE);
    for (const [path, f] of [...ckpt.files].sort(([a], [b]) => a.localeCompare(b))) {
      const ends = [...f.tensors.values()].map((t) => f.dataStart + t.end).sort((a, b) => a - b);
      files.push({ path, bytes: await f.source.size(), source: f.source, tensorEnds: ends });
    }
    return { id, name, sourceText, builtin: source.kind === 'demo', folder, config: config as Record<string, unknown>, spec, files };
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}

let running: AbortController | null = null;

export function cancelRunningImport(): void {
  running?.abort(new DOMException('import cancelled', 'AbortError'));
}

export async function importModel(source: ModelSource, appBase: string, onProgress: (p: ImportProgress) => void): Promise<StoredModel> {
  if (running) throw new Error('another import is running; wait for it or cancel it');
  const ac = new AbortController();
  running = ac;
  try {
    if (source.kind === 'demo') {
      const have = await storedModel(DEMO_MODEL_ID);
      if (have) return have;
    }
    const progress: ImportProgress = {
      phase: 'checking', file: '', bytesDone: 0, bytesTotal: 0, tensorsDone: 0, tensorsTotal: 0, etaSeconds: null, bytesResumed: 0,
    };
    onProgress({ ...progress });
    const plan = await planImport(source, appBase);
    ac.signal.throwIfAborted();
    return await copyAndRecord(plan, progress, onProgress, ac.signal);
  } finally {
    running = null;
  }
}

async function copyAndRecord(plan: Plan, progress: ImportProgress, onProgress: (p: ImportProgress) => void, signal: AbortSignal): Promise<StoredModel> {
  const dir = (await dirAt(`${MODELS}/${plan.id}`, true))!;
  const wanted = plan.files.map((f) => ({ path: f.path, bytes: f.bytes }));
  // Already imported, every file complete: nothing to do.
  const existing = await readText(dir, RECORD);
  if (existing !== null) {
    const stored = opfsFolder(dir, plan.id);
    const sizes = await Promise.all(wanted.map(async (f) => (await stored.open(f.path))?.size()));
    if (sizes.every((n, i) => n === wanted[i]!.bytes)) return JSON.parse(existing) as StoredModel;
    await removeEntry(dir, RECORD);
  }
  // A different earlier import into this folder (other file sizes) is discarded, not resumed.
  const before = await readText(dir, PARTIAL);
  if (before !== null && before !== JSON.stringify(wanted)) {
    for (const f of plan.files) await removeEntry(dir, f.path);
  }
  await writeWhole(dir, PARTIAL, JSON.stringify(wanted));

  progress.phase = 'copying';
  progress.bytesTotal = plan.files.reduce((a, f) => a + f.bytes, 0);
  progress.tensorsTotal = plan.files.reduce((a, f) => a + f.tensorEnds.length, 0);
  const t0 = performance.now();
  let copiedNow = 0;
  let doneBefore = 0; // bytes of the files already finished
  let tensorsBefore = 0;
  for (const f of plan.files) {
    signal.throwIfAborted();
    progress.file = f.path;
    const writer = await InPlaceWriter.open((await fileAt(dir, f.path, true))!);
    try {
      let at = writer.size();
      if (at > f.bytes) {
        writer.truncate(0);
        at = 0;
      }
      progress.bytesResumed += at;
      while (at < f.bytes) {
        signal.throwIfAborted();
        const n = Math.min(CHUNK, f.bytes - at);
        const bytes = await f.source.read(at, n);
        writer.write(bytes, at);
        writer.flush();
        at += n;
        copiedNow += n;
        progress.bytesDone = doneBefore + at;
        progress.tensorsDone = tensorsBefore + f.tensorEnds.filter((e) => e <= at).length;
        const rate = copiedNow / Math.max(1e-3, (performance.now() - t0) / 1000);
        progress.etaSeconds = (progress.bytesTotal - progress.bytesDone) / rate;
        onProgress({ ...progress });
      }
    } finally {
      writer.close();
      await f.source.close?.();
    }
    doneBefore += f.bytes;
    tensorsBefore += f.tensorEnds.length;
    progress.bytesDone = doneBefore;
    progress.tensorsDone = tensorsBefore;
    onProgress({ ...progress });
  }

  progress.phase = 'verifying';
  onProgress({ ...progress });
  const stored = opfsFolder(dir, plan.id);
  for (const f of plan.files) {
    const size = await (await stored.open(f.path))?.size();
    if (size !== f.bytes) throw new Error(`${f.path}: stored ${size ?? 0} bytes, expected ${f.bytes}`);
  }
  const check = await openCheckpoint(stored);
  await check.close();

  const record: StoredModel = {
    id: plan.id,
    name: plan.name,
    arch: plan.spec.arch,
    archDisplay: archInfo(plan.spec.arch).displayName,
    facts: modelFacts(plan.spec),
    params: countParams(plan.spec),
    bytes: progress.bytesTotal,
    files: wanted,
    hasTokenizer: wanted.some((f) => f.path === 'tokenizer.json'),
    source: plan.sourceText,
    builtin: plan.builtin,
    importedAt: Date.now(),
    config: plan.config,
  };
  await writeWhole(dir, RECORD, JSON.stringify(record));
  await removeEntry(dir, PARTIAL);
  progress.phase = 'done';
  progress.etaSeconds = 0;
  onProgress({ ...progress });
  return record;
}
