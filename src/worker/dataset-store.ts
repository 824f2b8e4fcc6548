// Contract: tokenized datasets in OPFS under datasets/<id>/: summary.json (DatasetSummary, written last) and the
// train / eval token streams as little-endian int32 files. Tokenizing again is skipped when the same input was stored.

import type { TokenStream } from '../engine/train/token-stream.ts';
import { dirAt, entries, fileAt, folderBytes, readText, removeEntry, writeWhole } from '../store/opfs.ts';
import type { DatasetSummary } from './protocol.ts';

const DATASETS = 'datasets';
const SUMMARY = 'summary.json';

export function safeDatasetId(id: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,100}$/.test(id)) throw new Error(`invalid dataset id ${JSON.stringify(id)}`);
  return id;
}

export async function listStoredDatasets(): Promise<DatasetSummary[]> {
  const dir = await dirAt(DATASETS, false);
  if (!dir) return [];
  const out: DatasetSummary[] = [];
  for await (const [, h] of entries(dir)) {
    if (h.kind !== 'directory') continue;
    const text = await readText(h as FileSystemDirectoryHandle, SUMMARY);
    if (!text) continue;
    try {
      out.push(JSON.parse(text) as DatasetSummary);
    } catch {
      /* cut short by a crash: skipped */
    }
  }
  return out.sort((a, b) => a.createdAt - b.createdAt);
}

export async function storedDataset(id: string): Promise<DatasetSummary | null> {
  const dir = await dirAt(`${DATASETS}/${safeDatasetId(id)}`, false);
  const text = dir ? await readText(dir, SUMMARY) : null;
  return text ? (JSON.parse(text) as DatasetSummary) : null;
}

/** The array over a plain ArrayBuffer (copied if it sits in shared memory), as file writes require. */
const plain = (a: Int32Array): Int32Array<ArrayBuffer> => (a.buffer instanceof ArrayBuffer ? (a as Int32Array<ArrayBuffer>) : new Int32Array(a));

async function writeStream(dir: FileSystemDirectoryHandle, prefix: string, s: TokenStream): Promise<void> {
  await writeWhole(dir, `${prefix}.ids.i32`, plain(s.ids));
  await writeWhole(dir, `${prefix}.docs.i32`, plain(s.docStarts));
  if (s.labels) await writeWhole(dir, `${prefix}.labels.i32`, plain(s.labels));
}

async function readI32(dir: FileSystemDirectoryHandle, path: string): Promise<Int32Array | null> {
  const h = await fileAt(dir, path, false);
  return h ? new Int32Array(await (await h.getFile()).arrayBuffer()) : null;
}

async function readStream(dir: FileSystemDirectoryHandle, prefix: string): Promise<TokenStream | null> {
  const ids = await readI32(dir, `${prefix}.ids.i32`);
  if (!ids) return null;
  return { ids, labels: await readI32(dir, `${prefix}.labels.i32`), docStarts: (await readI32(dir, `${prefix}.docs.i32`)) ?? new Int32Array([0]) };
}

export async function saveDataset(summary: DatasetSummary, train: TokenStream, evalStream: TokenStream | null): Promise<void> {
  const dir = (await dirAt(`${DATASETS}/${safeDatasetId(summary.id)}`, true))!;
  await removeEntry(dir, SUMMARY);
  await writeStream(dir, 'train', train);
  if (evalStream) await writeStream(dir, 'eval', evalStream);
  await writeWhole(dir, SUMMARY, JSON.stringify(summary));
}

/** The stored streams (for the engine): train, and the in-domain eval part when the dataset has one. */
export async function loadDatasetStreams(id: string): Promise<{ summary: DatasetSummary; train: TokenStream; eval: TokenStream | null }> {
  const dir = await dirAt(`${DATASETS}/${safeDatasetId(id)}`, false);
  const text = dir ? await readText(dir, SUMMARY) : null;
  if (!dir || !text) throw new Error(`no stored dataset "${id}"`);
  const train = await readStream(dir, 'train');
  if (!train) throw new Error(`dataset "${id}" has no token stream; load it again`);
  return { summary: JSON.parse(text) as DatasetSummary, train, eval: await readStream(dir, 'eval') };
}

export async function deleteStoredDataset(id: string): Promise<void> {
  const dir = await dirAt(DATASETS, false);
  if (dir) await removeEntry(dir, safeDatasetId(id));
}

export async function datasetsBytes(): Promise<number> {
  const dir = await dirAt(DATASETS, false);
  return dir ? folderBytes(dir) : 0;
}
