// Contract: models stored by earlier versions of the app: the Hub files copied as they were into models/<id>/, with
// the record usaf-model.json written last. Read-only here: they stay listed and usable ('hub-copy'), can be imported
// again into the 4-bit store (the copy is kept until the user deletes it), and nothing of them is removed silently.

import type { FileSet } from '../engine/io/folder.ts';
import type { StoredModel } from './records.ts';
import { dirUnder, entries, opfsFolder, readText } from './opfs.ts';

export const LEGACY_DIR = 'models';
export const LEGACY_RECORD = 'usaf-model.json';

/** The complete copies (a folder without its record was an unfinished import and is not listed). */
export async function listLegacy(root: FileSystemDirectoryHandle): Promise<StoredModel[]> {
  const dir = await dirUnder(root, LEGACY_DIR, false);
  if (!dir) return [];
  const out: StoredModel[] = [];
  for await (const [name, h] of entries(dir)) {
    if (h.kind !== 'directory') continue;
    const text = await readText(h as FileSystemDirectoryHandle, LEGACY_RECORD);
    if (!text) continue;
    try {
      out.push({ ...(JSON.parse(text) as StoredModel), storage: 'hub-copy', groupSize: null });
    } catch {
      console.warn(`${LEGACY_DIR}/${name}/${LEGACY_RECORD} is not valid JSON; ignored`);
    }
  }
  return out;
}

export async function legacyFolder(root: FileSystemDirectoryHandle, id: string): Promise<FileSet> {
  const dir = await dirUnder(root, `${LEGACY_DIR}/${id}`, false);
  if (!dir || !(await readText(dir, LEGACY_RECORD))) throw new Error(`no stored model "${id}"`);
  return opfsFolder(dir, id);
}
