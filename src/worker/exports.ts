// Contract: the worker's exports, streamed: a run's delta (made from its checkpoint, staged in OPFS), merged onto the
// original weights (the import's folder handle or URL, checked against the delta's base) into the target folder — the
// user's, or OPFS then one disk-backed download per file; a delta alone with its `usaf merge` command; a delta file
// applied onto a picked original. One export at a time; cancel aborts it, complete files stay for a restart.

import { blobSource, type ByteSource } from '../engine/io/byte-source.ts';
import { fileMapFolder, type FileSet } from '../engine/io/folder.ts';
import { readAheadFolder } from '../engine/io/read-ahead.ts';
import { crc32, DELTA_FILE, hex32 } from '../engine/train/delta.ts';
import { DEFAULT_MAX_SHARD_BYTES } from '../engine/train/export.ts';
import { openFolderSink, type FolderSink } from '../store/folder-sink.ts';
import { dirAt, opfsFolder } from '../store/opfs.ts';
import { originFolder, originOf, originText, readPermission, type ModelOrigin, type OriginKv } from '../store/origins.ts';
import { stripCommonFolder } from '../store/sources.ts';
import type { MergeProgress } from '../engine/train/merge.ts';
import type { EngineBinding, ExportArgs } from './engine-binding.ts';
import {
  ORIGINAL_UNAVAILABLE,
  type ExportOrigin, type ExportProgress, type ExportResult, type ExportTarget, type OriginalFolder, type StoredModel,
} from './protocol.ts';

/** OPFS folders: the delta staged for a merge, and the files of an export handed over as downloads. */
export const STAGE_DIR = 'exports/stage';
export const DOWNLOADS_DIR = 'exports/downloads';

/** What exports need of the engine. */
export type ExportEngine = Pick<EngineBinding, 'writeDelta' | 'checkDeltaBase' | 'mergeModel'>;

export interface ExportDeps {
  engine(what: string): ExportEngine;
  /** The run's export inputs and its stored model. */
  run(runId: string): Promise<{ args: ExportArgs; model: StoredModel }>;
  origins: OriginKv;
  appBase(): string;
  /** Cap on one shard's tensor data (default DEFAULT_MAX_SHARD_BYTES, as usaf merge). */
  shardBytes?: number;
}

/** An error the page answers by asking for the original folder again (or offering the delta alone). */
export function originalUnavailable(message: string): Error {
  const e = new Error(message);
  e.name = ORIGINAL_UNAVAILABLE;
  return e;
}

/** `usaf merge` for a delta saved next to where the command runs; arguments quoted for a POSIX shell where needed. */
export function mergeCommand(base: string, out: string): string {
  const q = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return `usaf merge --base ${q(base)} --delta ${DELTA_FILE} --out ${q(out)}`;
}

/** CRC-32 (hex) of a whole source, read in pieces: identifies a delta in an export's journal. */
async function sourceCrc(src: ByteSource): Promise<string> {
  const size = await src.size();
  let crc = 0;
  for (let at = 0; at < size; at += 8 << 20) crc = crc32(await src.read(at, Math.min(8 << 20, size - at)), crc);
  return hex32(crc);
}

const aborted = (): DOMException => new DOMException('export cancelled', 'AbortError');

export class Exports {
  private running: AbortController | null = null;

  private readonly shardBytes: number;

  constructor(private readonly deps: ExportDeps) {
    this.shardBytes = deps.shardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  }

  cancel(): void {
    this.running?.abort(aborted());
  }

  async origin(runId: string): Promise<ExportOrigin> {
    const { model } = await this.deps.run(runId);
    const o = await originOf(this.deps.origins, model, this.deps.appBase());
    if (!o) return { kind: 'none', text: null, handle: null, permission: null };
    if (o.kind === 'url') return { kind: 'url', text: o.url, handle: null, permission: null };
    return { kind: 'folder', text: o.name, handle: o.handle, permission: await readPermission(o.handle) };
  }

  async model(runId: string, target: ExportTarget, original: OriginalFolder | null, onProgress: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exclusive(async (signal) => {
      const engine = this.deps.engine('Exporting a fine-tuned model');
      const { args, model } = await this.deps.run(runId);
      const origin: ModelOrigin | null = original?.kind === 'handle' ? { kind: 'folder', name: original.dir.name, handle: original.dir }
        : original ? null : await originOf(this.deps.origins, model, this.deps.appBase());
      const base = original?.kind === 'files' ? pickedFolder(original) : origin ? await readableOrigin(origin, model) : null;
      if (!base) {
        throw originalUnavailable(`The original weights of "${model.name}" (${model.source}) are not known to this browser: choose the original model folder, or export the delta alone and merge it with usaf merge.`);
      }
      const p = progress(onProgress);
      p.report({ phase: 'delta' });
      const stage = await stageDir();
      const staged = await openFolderSink(stage, { job: `stage:${Date.now()}`, clearOther: true, signal });
      await engine.writeDelta(args, staged, base);
      const delta = await stagedDelta(stage);
      signal.throwIfAborted();

      p.report({ phase: 'checking' });
      await checkOriginal(engine, base, delta);
      // A restart of the same export (same delta, same original) into the same folder keeps its complete files.
      const job = `model:${runId}:${await sourceCrc(delta)}:${base.name}:${this.shardBytes}`;
      const written = await this.merge(engine, base, delta, target, job, p, signal);
      if (original?.kind === 'handle') await this.deps.origins.set(model.id, origin!); // it matched: remember it
      return written;
    });
  }

  async delta(runId: string, target: ExportTarget, onProgress: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exclusive(async (signal) => {
      const engine = this.deps.engine('Exporting the sparse delta');
      const { args, model } = await this.deps.run(runId);
      const p = progress(onProgress);
      p.report({ phase: 'delta' });
      const o = await originOf(this.deps.origins, model, this.deps.appBase());
      // The original is read only for a store that did not record its fingerprint, and only when it may be read.
      const original = o && (o.kind === 'url' || (await readPermission(o.handle)) === 'granted') ? originFolder(o) : null;
      const sink = await targetSink(target, { job: `delta:${runId}:${Date.now()}`, signal, onFile: p.onFile });
      const written = await engine.writeDelta(args, sink, original);
      const out = `${model.name.replace(/[^\w.-]+/g, '-')}-finetuned`;
      const result = await finish(sink, target);
      p.report({ phase: 'done' });
      const base = o ? originText(o) : written.originalSource ?? '<the original model folder>';
      return { ...result, mergeCommand: mergeCommand(base, out) };
    });
  }

  async apply(deltaFile: Blob, original: OriginalFolder, target: ExportTarget, onProgress: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exclusive(async (signal) => {
      const engine = this.deps.engine('Applying a delta');
      const base = original.kind === 'files' ? pickedFolder(original) : opfsFolder(original.dir, original.dir.name);
      const delta = blobSource(deltaFile, deltaFile instanceof File ? deltaFile.name : DELTA_FILE);
      const p = progress(onProgress);
      p.report({ phase: 'checking' });
      await checkOriginal(engine, base, delta);
      const job = `apply:${await sourceCrc(delta)}:${base.name}:${this.shardBytes}`;
      return this.merge(engine, base, delta, target, job, p, signal);
    });
  }

  // -------------------------------------------------------------------------------------------

  private async merge(
    engine: ExportEngine, base: FileSet, delta: ByteSource, target: ExportTarget, job: string, p: Progress, signal: AbortSignal,
  ): Promise<ExportResult> {
    const sink = await targetSink(target, { job, signal, onFile: p.onFile });
    p.report({ phase: 'writing' });
    try {
      // the original read in windows of 32 MiB, one ahead, not one request per tensor (src/engine/io/read-ahead.ts)
      await engine.mergeModel(readAheadFolder(base), delta, sink, {
        maxShardBytes: this.shardBytes, signal,
        // shards kept from an interrupted export are not written again: their bytes count as done
        onProgress: (m: MergeProgress) => p.report({ file: m.file, bytesDone: Math.min(m.bytes, m.bytesDone + p.keptBytes()), bytesTotal: m.bytes, tensorsDone: m.tensorsDone, tensorsTotal: m.tensors }),
      });
    } catch (e) {
      // A tensor of the original that is not the delta's base shows only when it is copied.
      if ((e as Error).name === 'DeltaError') throw unusable(base, e);
      throw e;
    }
    signal.throwIfAborted();
    const result = await finish(sink, target);
    p.report({ phase: 'done' });
    return result;
  }

  private async exclusive<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.running) throw new Error('another export is running; wait for it or cancel it');
    const ac = new AbortController();
    this.running = ac;
    try {
      return await work(ac.signal);
    } finally {
      this.running = null;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface Progress {
  report(change: Partial<ExportProgress>): void;
  onFile(path: string, bytes: number, skipped: boolean): void;
  /** Bytes of the files kept from an interrupted export (not written again). */
  keptBytes(): number;
}

/** Reports at most every PROGRESS_MS while writing (one message per tensor would flood the page), and every change of phase or file. */
const PROGRESS_MS = 100;

function progress(onProgress: (p: ExportProgress) => void): Progress {
  const p: ExportProgress = { phase: 'delta', file: '', bytesDone: 0, bytesTotal: 0, tensorsDone: 0, tensorsTotal: 0, filesDone: 0, filesSkipped: 0 };
  let last = 0, kept = 0;
  const report = (change: Partial<ExportProgress>): void => {
    const news = (change.phase !== undefined && change.phase !== p.phase) || (change.file !== undefined && change.file !== p.file)
      || (change.filesDone !== undefined && change.filesDone !== p.filesDone);
    Object.assign(p, change);
    const now = performance.now();
    if (!news && now - last < PROGRESS_MS) return;
    last = now;
    onProgress({ ...p });
  };
  return {
    report,
    onFile: (path, bytes, skipped) => {
      if (skipped) kept += bytes;
      report({ file: path, filesDone: p.filesDone + 1, filesSkipped: p.filesSkipped + (skipped ? 1 : 0) });
    },
    keptBytes: () => kept,
  };
}

function pickedFolder(o: { name: string; files: { path: string; file: Blob }[] }): FileSet {
  const strip = stripCommonFolder(o.files.map((f) => f.path));
  return fileMapFolder(new Map(o.files.map((f) => [strip(f.path), f.file])), o.name);
}

/** The origin's files, or an OriginalUnavailable error when the folder may not be read. */
async function readableOrigin(o: ModelOrigin, model: StoredModel): Promise<FileSet> {
  if (o.kind === 'folder' && (await readPermission(o.handle)) !== 'granted') {
    throw originalUnavailable(`This browser may not read the folder "${o.name}" that "${model.name}" was imported from: allow it, choose the original model folder again, or export the delta alone.`);
  }
  return originFolder(o);
}

/** The delta must have been made from `base`; anything that keeps it from being read or checked names why. */
async function checkOriginal(engine: ExportEngine, base: FileSet, delta: ByteSource): Promise<void> {
  try {
    await engine.checkDeltaBase(base, delta);
  } catch (e) {
    throw unusable(base, e);
  }
}

function unusable(base: FileSet, e: unknown): Error {
  const why = (e as Error).message;
  return originalUnavailable(`The original weights in ${base.name} cannot be used: ${why}. Choose the original model folder, or export the delta alone and merge it with usaf merge.`);
}

async function stageDir(): Promise<FileSystemDirectoryHandle> {
  return (await dirAt(STAGE_DIR, true))!;
}

/** The staged delta as a disk-backed source (nothing of it in memory but what a read asks for). */
async function stagedDelta(stage: FileSystemDirectoryHandle): Promise<ByteSource> {
  return blobSource(await (await stage.getFileHandle(DELTA_FILE)).getFile(), DELTA_FILE);
}

async function targetSink(target: ExportTarget, o: { job: string; signal: AbortSignal; onFile: Progress['onFile'] }): Promise<FolderSink> {
  if (target.kind === 'folder') return openFolderSink(target.dir, o);
  return openFolderSink((await dirAt(DOWNLOADS_DIR, true))!, { ...o, clearOther: true });
}

/** Journal removed; the files complete, with disk-backed Files for downloads. */
async function finish(sink: FolderSink, target: ExportTarget): Promise<ExportResult> {
  await sink.finish();
  const dir = target.kind === 'folder' ? null : (await dirAt(DOWNLOADS_DIR, false))!;
  const files = [];
  for (const [name, bytes] of sink.complete) {
    files.push({ name, bytes, data: dir ? await fileIn(dir, name) : null });
  }
  return { folder: target.kind === 'folder' ? target.dir.name : null, files, skipped: [...sink.skipped], mergeCommand: null };
}

async function fileIn(dir: FileSystemDirectoryHandle, path: string): Promise<File> {
  const parts = path.split('/');
  let d = dir;
  for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p);
  return (await d.getFileHandle(parts[parts.length - 1]!)).getFile();
}
