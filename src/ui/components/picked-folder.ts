// Contract: a model folder chosen in the page as PickedFiles (paths relative to the folder's parent, like
// webkitRelativePath): from the directory picker (showDirectoryPicker), or from a folder dropped onto the page.
// Only File objects are collected; their bytes are read later, by the worker, a slice at a time.

import type { PickedFile } from '../../worker/protocol.ts';

type DirHandle = FileSystemDirectoryHandle & { values(): AsyncIterable<FileSystemHandle> };

/** Every file below `dir`, paths prefixed with the folder's own name. */
export async function filesOfHandle(dir: FileSystemDirectoryHandle, prefix = `${dir.name}/`): Promise<PickedFile[]> {
  const out: PickedFile[] = [];
  for await (const h of (dir as DirHandle).values()) {
    if (h.kind === 'file') out.push({ path: prefix + h.name, file: await (h as FileSystemFileHandle).getFile() });
    else out.push(...(await filesOfHandle(h as FileSystemDirectoryHandle, `${prefix}${h.name}/`)));
  }
  return out;
}

/** The directory picker where the browser has one (Chromium); null when it does not or the user cancelled. */
export async function pickFolder(): Promise<{ name: string; files: PickedFile[]; handle?: FileSystemDirectoryHandle } | null> {
  const picker = (window as unknown as { showDirectoryPicker?: (o?: object) => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker;
  if (!picker) return null;
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await picker({ mode: 'read' });
  } catch (e) {
    if ((e as DOMException).name === 'AbortError') return { name: '', files: [] };
    throw e;
  }
  return { name: dir.name, files: await filesOfHandle(dir), handle: dir };
}

export const hasFolderPicker = (): boolean => typeof (window as { showDirectoryPicker?: unknown }).showDirectoryPicker === 'function';

function readEntries(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((ok, fail) => reader.readEntries(ok, fail));
}

async function filesOfEntry(entry: FileSystemEntry): Promise<PickedFile[]> {
  const path = entry.fullPath.replace(/^\//, '');
  if (entry.isFile) {
    const file = await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail));
    return [{ path, file }];
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const out: PickedFile[] = [];
  // readEntries answers in batches (100 in Chromium) until an empty one
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const e of batch) out.push(...(await filesOfEntry(e)));
  }
  return out;
}

/** The folder dropped (the first item that is a folder), or null when the drop holds none. */
export async function droppedFolder(data: DataTransfer): Promise<{ name: string; files: PickedFile[] } | null> {
  // the entries must be taken synchronously, before the drop event's data is released
  const entries = [...data.items].map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  const dir = entries.find((e) => e.isDirectory);
  if (!dir) return null;
  return { name: dir.name, files: await filesOfEntry(dir) };
}
