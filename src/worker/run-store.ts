// Contract: run records in OPFS under runs/<id>/ — run.json (the RunSummary, rewritten as the run goes) and log.jsonl
// (one JSON object per line, the seed's log format). A run found "running" or "paused" at startup was interrupted.

import { dirAt, entries, fileAt, folderBytes, readText, removeEntry, writeWhole } from '../store/opfs.ts';
import type { RunSummary } from './protocol.ts';

const RUNS = 'runs';
const RECORD = 'run.json';
const LOG = 'log.jsonl';

function safeRunId(id: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,80}$/.test(id)) throw new Error(`invalid run id ${JSON.stringify(id)}`);
  return id;
}

export function newRunId(now: number = Date.now()): string {
  const d = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `run-${d}-${Math.floor(Math.random() * 0xffff).toString(16).padStart(4, '0')}`;
}

/**
 * A record's text. run.json is rewritten as a run goes (a swap file replacing it on close); a read that meets the
 * replacement fails (NotReadableError, or NotFoundError between the handle and its file), so it is tried again.
 */
async function readRecordText(dir: FileSystemDirectoryHandle): Promise<string | null> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await readText(dir, RECORD);
    } catch (e) {
      const name = (e as DOMException).name;
      if ((name !== 'NotReadableError' && name !== 'NotFoundError') || attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
    }
  }
}

export async function runFolder(id: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
  return dirAt(`${RUNS}/${safeRunId(id)}`, create);
}

export async function listRunRecords(): Promise<RunSummary[]> {
  const dir = await dirAt(RUNS, false);
  if (!dir) return [];
  const out: RunSummary[] = [];
  for await (const [, h] of entries(dir)) {
    if (h.kind !== 'directory') continue;
    let text: string | null;
    try {
      text = await readRecordText(h as FileSystemDirectoryHandle);
    } catch (e) {
      console.warn(`runs/${h.name}/${RECORD} could not be read; skipped`, e);
      continue;
    }
    if (!text) continue;
    try {
      out.push(JSON.parse(text) as RunSummary);
    } catch {
      /* a record cut short by a crash: skipped */
    }
  }
  return out.sort((a, b) => b.createdAt - a.createdAt);
}

export async function readRunRecord(id: string): Promise<RunSummary | null> {
  const dir = await runFolder(id, false);
  const text = dir ? await readRecordText(dir) : null;
  return text ? (JSON.parse(text) as RunSummary) : null;
}

export async function writeRunRecord(run: RunSummary): Promise<void> {
  const dir = (await runFolder(run.id, true))!;
  await writeWhole(dir, RECORD, JSON.stringify({ ...run, updatedAt: Date.now() }));
}

/** Appends lines (each one JSON object) to the run's log.jsonl. */
export async function appendRunLog(id: string, lines: string[]): Promise<void> {
  const dir = (await runFolder(id, true))!;
  const h = (await fileAt(dir, LOG, true))!;
  const size = (await h.getFile()).size;
  const w = await h.createWritable({ keepExistingData: true });
  try {
    await w.seek(size);
    await w.write(lines.map((l) => `${l}\n`).join(''));
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/** Replaces the run's log.jsonl with these lines (a resumed run: the log as of its checkpoint). */
export async function replaceRunLog(id: string, lines: string[]): Promise<void> {
  const dir = (await runFolder(id, true))!;
  await writeWhole(dir, LOG, lines.map((l) => `${l}\n`).join(''));
}

/** The OPFS implementation of the records a run keeps. */
export const opfsRunRecords = { write: writeRunRecord, appendLog: appendRunLog, replaceLog: replaceRunLog };

/** The bytes of each run's folder (record, log, checkpoint), in the order of `runs`. */
export async function runsBytes(runs: readonly RunSummary[]): Promise<{ id: string; name: string; bytes: number }[]> {
  const out: { id: string; name: string; bytes: number }[] = [];
  for (const r of runs) {
    const dir = await runFolder(r.id, false);
    out.push({ id: r.id, name: r.name || r.id, bytes: dir ? await folderBytes(dir) : 0 });
  }
  return out;
}

/** Removes a run's folder (record first: a run half removed is not listed again). */
export async function deleteRunFolder(id: string): Promise<void> {
  const dir = await runFolder(id, false);
  if (!dir) return;
  await removeEntry(dir, RECORD);
  await removeEntry((await dirAt(RUNS, false))!, safeRunId(id));
}

export async function readRunLog(id: string): Promise<Blob | null> {
  const dir = await runFolder(id, false);
  const h = dir ? await fileAt(dir, LOG, false) : null;
  return h ? h.getFile() : null;
}

/** Name of the Web Lock a live run holds (so that another tab does not take it for interrupted). */
export const runLockName = (id: string): string => `usaf-run-${id}`;

/**
 * At worker start (and when runs are listed), a record still "running" or "paused" belongs to a closed or reloaded
 * page — unless another tab's worker holds its lock (the run is live there) or it is this worker's own run (`except`).
 */
export async function markInterruptedRuns(except: string | null = null): Promise<void> {
  const held = new Set((await navigator.locks?.query().catch(() => null))?.held?.map((l) => l.name) ?? []);
  for (const r of await listRunRecords()) {
    if ((r.status === 'running' || r.status === 'paused') && r.id !== except && !held.has(runLockName(r.id))) {
      await writeRunRecord({ ...r, status: 'interrupted' });
    }
  }
}
