// A model folder dropped onto the Models screen or chosen with the directory picker, as the PickedFiles the worker
// imports: every file, nested folders included, paths starting with the folder's name; readEntries' batches all read.
import { describe, expect, it } from 'vitest';
import { droppedFolder, filesOfHandle } from '../../../src/ui/components/picked-folder.ts';

type Tree = { [name: string]: string | Tree };

/** webkitGetAsEntry()'s entries over a tree, answering readEntries in batches of 2. */
function entry(name: string, node: string | Tree, parent = ''): FileSystemEntry {
  const fullPath = `${parent}/${name}`;
  if (typeof node === 'string') {
    return { isFile: true, isDirectory: false, name, fullPath, file: (ok: (f: File) => void) => ok(new File([node], name)) } as unknown as FileSystemEntry;
  }
  const kids = Object.entries(node).map(([n, v]) => entry(n, v, fullPath));
  return {
    isFile: false, isDirectory: true, name, fullPath,
    createReader: () => {
      let at = 0;
      return { readEntries: (ok: (e: FileSystemEntry[]) => void) => { ok(kids.slice(at, at + 2)); at += 2; } };
    },
  } as unknown as FileSystemEntry;
}

/** A FileSystemDirectoryHandle over a tree (values() and getFile() only). */
function handle(name: string, node: Tree): FileSystemDirectoryHandle {
  return {
    kind: 'directory', name,
    async *values() {
      for (const [n, v] of Object.entries(node)) {
        yield typeof v === 'string' ? { kind: 'file', name: n, getFile: async () => new File([v], n) } : handle(n, v);
      }
    },
  } as unknown as FileSystemDirectoryHandle;
}

const MODEL: Tree = {
  'config.json': '{}', 'model-00001-of-00002.safetensors': 'aa', 'model-00002-of-00002.safetensors': 'bbb',
  'model.safetensors.index.json': '{}', tokenizer: { 'tokenizer.json': 'tt' },
};
const WANT = ['m/config.json', 'm/model-00001-of-00002.safetensors', 'm/model-00002-of-00002.safetensors', 'm/model.safetensors.index.json', 'm/tokenizer/tokenizer.json'];

describe('picked model folders', () => {
  it('a dropped folder: every file, in every batch and subfolder, with sizes', async () => {
    const data = { items: [{ webkitGetAsEntry: () => entry('m', MODEL) }] } as unknown as DataTransfer;
    const got = await droppedFolder(data);
    expect(got!.name).toBe('m');
    expect(got!.files.map((f) => f.path).sort()).toEqual(WANT);
    expect(got!.files.find((f) => f.path === 'm/model-00002-of-00002.safetensors')!.file.size).toBe(3);
    expect(got!.handle).toBeUndefined();
    // where the browser gives the folder's handle too (Chromium), it is kept for exports; a file's handle is not
    const dirHandle = handle('m', MODEL);
    const withHandle = { items: [{ webkitGetAsEntry: () => entry('m', MODEL), getAsFileSystemHandle: async () => dirHandle }] } as unknown as DataTransfer;
    expect((await droppedFolder(withHandle))!.handle).toBe(dirHandle);
    const fileHandle = { items: [{ webkitGetAsEntry: () => entry('m', MODEL), getAsFileSystemHandle: async () => ({ kind: 'file' }) }] } as unknown as DataTransfer;
    expect((await droppedFolder(fileHandle))!.handle).toBeUndefined();
  });

  it('a drop of single files is not a folder', async () => {
    const data = { items: [{ webkitGetAsEntry: () => entry('config.json', '{}') }] } as unknown as DataTransfer;
    expect(await droppedFolder(data)).toBeNull();
  });

  it('a picked directory handle: the same files', async () => {
    const files = await filesOfHandle(handle('m', MODEL));
    expect(files.map((f) => f.path).sort()).toEqual(WANT);
  });
});
