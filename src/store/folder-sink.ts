// Contract: a FileSink over a folder handle — one the user picked (File System Access) or an OPFS folder — that streams
// each file under "<name>.usaf-partial", renamed to its name once complete, holding at most `capBytes` between writes;
// a journal (usaf-export.json) names the files an export completed, so that a restarted export of the same job skips them.

import { asBytes, checkSinkPath, type Chunks, type FileSink } from '../engine/io/sink.ts';
import { InPlaceWriter, removeEntry } from './opfs.ts';

export const PARTIAL_SUFFIX = '.usaf-partial';
export const JOURNAL_FILE = 'usaf-export.json';
/** Bytes gathered before one write into the file: small tensors arrive in many small chunks. */
export const DEFAULT_CAP_BYTES = 8 << 20;

export interface FolderSinkOptions {
  /**
   * What is being written, in one string (run, checkpoint step, delta hash, base fingerprint, shard cap): a journal left
   * by an interrupted export of the same job lets its complete files be skipped; any other journal is started over.
   */
  job: string;
  /** Most bytes held between writes into a file (default DEFAULT_CAP_BYTES). */
  capBytes?: number;
  /** Checked before every write: aborting leaves no partial file, and what was complete stays listed. */
  signal?: AbortSignal;
  /** Empty the folder when the journal is not this job's (only for the app's own OPFS folder, never a user's). */
  clearOther?: boolean;
  /** Each file done: written (bytes) or skipped as already complete. */
  onFile?(path: string, bytes: number, skipped: boolean): void;
}

export interface FolderSink extends FileSink {
  /** Files found complete from an earlier run of the same job, not written again. */
  readonly skipped: readonly string[];
  /** Every file complete now (written or skipped), with its size. */
  readonly complete: ReadonlyMap<string, number>;
  /** Most bytes the sink held at once (chunks gathered for one write), for tests and reports. */
  readonly peakHeldBytes: number;
  /** Removes the journal: the folder then holds the export alone. Call once every file is written. */
  finish(): Promise<void>;
}

interface Journal {
  format: 'usaf-export';
  job: string;
  /** Path → bytes of each complete file. */
  files: Record<string, number>;
}

/** FileSystemHandle.move(newName) renames within the folder (not in lib.dom yet; absent in some browsers and folders). */
type Movable = FileSystemFileHandle & { move?(newName: string): Promise<void> };
type SyncCapable = FileSystemFileHandle & { createSyncAccessHandle?(): Promise<FileSystemSyncAccessHandle> };

// ---------------------------------------------------------------------------------------------
// One file's writer: a writable stream where there is one, else a synchronous access handle (OPFS in workers)

interface Writer {
  write(bytes: Uint8Array<ArrayBuffer>): Promise<void>;
  close(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * A writer for `file`. `atomic`: the file replaced only on close, i.e. a writable stream where there is one (a file
 * written under its final name: the journal, or any file where there is no rename). Otherwise (a ".usaf-partial" file,
 * renamed when complete) a synchronous access handle where the file is in OPFS and this is a worker, written in place by
 * this process (1.1–2× faster than a writable stream in Chromium: bench/results/opfs/README.md), else a stream.
 */
async function openWriter(file: FileSystemFileHandle, atomic: boolean): Promise<Writer> {
  const canSync = typeof (file as SyncCapable).createSyncAccessHandle === 'function';
  const canStream = typeof file.createWritable === 'function';
  if (!canSync && !canStream) throw new Error('this browser can write neither with createWritable nor with createSyncAccessHandle');
  if (canSync && !(atomic && canStream)) {
    // a picked folder's file refuses a sync access handle (not an OPFS file): a stream then
    const h = await (canStream ? InPlaceWriter.open(file).catch(() => null) : InPlaceWriter.open(file));
    if (h) {
      h.truncate(0);
      let at = 0;
      return {
        async write(b) {
          h.write(b, at);
          at += b.byteLength;
        },
        async close() { h.close(); },
        async abort() { h.close(); },
      };
    }
  }
  const w = await file.createWritable({ keepExistingData: false });
  return { write: (b) => w.write(b), close: () => w.close(), abort: () => w.abort().catch(() => undefined) };
}

/** Chunks gathered up to `cap` bytes, written in one call; a chunk larger than `cap` is written on its own. */
class Gather {
  private parts: Uint8Array<ArrayBuffer>[] = [];
  held = 0;
  constructor(private readonly out: Writer, private readonly cap: number, private readonly onHeld: (n: number) => void) {}

  async add(chunk: Uint8Array<ArrayBuffer>): Promise<void> {
    if (this.held + chunk.byteLength > this.cap) await this.flush();
    if (chunk.byteLength >= this.cap) return this.out.write(chunk);
    this.parts.push(chunk);
    this.held += chunk.byteLength;
    this.onHeld(this.held);
  }

  async flush(): Promise<void> {
    if (!this.parts.length) return;
    const one = this.parts.length === 1 ? this.parts[0]! : new Uint8Array(this.held);
    if (this.parts.length > 1) {
      let at = 0;
      for (const p of this.parts) { one.set(p, at); at += p.byteLength; }
    }
    this.parts = [];
    this.held = 0;
    await this.out.write(one);
  }
}

const notFound = (e: unknown): boolean => ['NotFoundError', 'TypeMismatchError'].includes((e as DOMException).name);

async function readJournal(dir: FileSystemDirectoryHandle): Promise<Journal | null> {
  try {
    const j = JSON.parse(await (await (await dir.getFileHandle(JOURNAL_FILE)).getFile()).text()) as Journal;
    return j && j.format === 'usaf-export' && typeof j.job === 'string' && j.files && typeof j.files === 'object' ? j : null;
  } catch {
    return null; // none, or unreadable: start over
  }
}

/** The size of the file at `parts` under `dir`, or null when there is none. */
async function sizeAt(dir: FileSystemDirectoryHandle, parts: string[]): Promise<number | null> {
  try {
    let d = dir;
    for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p);
    return (await (await d.getFileHandle(parts[parts.length - 1]!)).getFile()).size;
  } catch (e) {
    if (notFound(e)) return null;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------

/** Opens the sink: reads the journal (keeping complete files of the same job), removes partial files left in `dir`. */
export async function openFolderSink(dir: FileSystemDirectoryHandle, o: FolderSinkOptions): Promise<FolderSink> {
  const cap = o.capBytes ?? DEFAULT_CAP_BYTES;
  if (!(cap > 0)) throw new RangeError(`capBytes must be positive, got ${cap}`);
  const old = await readJournal(dir);
  const kept = new Map<string, number>(old?.job === o.job ? Object.entries(old.files) : []);
  if (old?.job !== o.job && o.clearOther) {
    for await (const [name] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) await removeEntry(dir, name);
  }
  for await (const [name] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
    if (name.endsWith(PARTIAL_SUFFIX)) await removeEntry(dir, name);
  }
  const complete = new Map<string, number>();
  const skipped: string[] = [];
  let peak = 0;

  const saveJournal = async (): Promise<void> => {
    const j: Journal = { format: 'usaf-export', job: o.job, files: Object.fromEntries([...complete, ...kept]) };
    const w = await openWriter(await dir.getFileHandle(JOURNAL_FILE, { create: true }), true);
    try {
      await w.write(asBytes(new TextEncoder().encode(`${JSON.stringify(j, null, 1)}\n`)));
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
  };
  await saveJournal(); // from here on the folder says which job it holds

  async function write(path: string, chunks: Chunks): Promise<void> {
    const parts = checkSinkPath(path).split('/');
    if (path === JOURNAL_FILE) throw new Error(`${JOURNAL_FILE} is the export's own journal and cannot be written through the sink`);
    o.signal?.throwIfAborted();
    const want = kept.get(path);
    if (want !== undefined && (await sizeAt(dir, parts)) === want) {
      complete.set(path, want);
      skipped.push(path);
      o.onFile?.(path, want, true);
      return;
    }
    kept.delete(path);
    let d = dir;
    for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p, { create: true });
    const leaf = parts[parts.length - 1]!;
    const temp = `${leaf}${PARTIAL_SUFFIX}`;
    let file = (await d.getFileHandle(temp, { create: true })) as Movable;
    const renames = typeof file.move === 'function';
    const existed = (await sizeAt(d, [leaf])) !== null;
    if (!renames) {
      // No rename here: the file is written under its own name (createWritable still replaces it only on close).
      await removeEntry(d, temp);
      file = await d.getFileHandle(leaf, { create: true });
    }
    const w = await openWriter(file, !renames);
    let bytes = 0;
    try {
      const g = new Gather(w, cap, (n) => { peak = Math.max(peak, n); });
      for await (const c of chunks) {
        o.signal?.throwIfAborted();
        bytes += c.byteLength;
        await g.add(asBytes(c));
      }
      o.signal?.throwIfAborted();
      await g.flush();
      await w.close();
    } catch (e) {
      await w.abort();
      if (renames) await removeEntry(d, temp);
      else if (!existed) await removeEntry(d, leaf); // getFileHandle created it empty
      throw e;
    }
    if (renames) {
      await removeEntry(d, leaf);
      await file.move!(leaf);
    }
    complete.set(path, bytes);
    await saveJournal();
    o.onFile?.(path, bytes, false);
  }

  return {
    name: dir.name,
    write,
    async commit() {},
    skipped,
    complete,
    get peakHeldBytes() { return peak; },
    async finish() {
      await removeEntry(dir, JOURNAL_FILE);
    },
  };
}
