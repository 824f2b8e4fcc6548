// FileSinks: the memory sink keeps whole files and can be reopened as a FileSet; the Node sink writes atomically
// (temporary file + rename), so a write that throws mid-way leaves neither a partial target nor a temporary file.

import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkSinkPath, joinPath, memorySink } from '../../../src/engine/io/sink.ts';
import { nodeFileSink, removeOrphanTemps } from '../../../src/node/file-sink.ts';
import { tempFolder } from '../../helpers/train-io.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Yields `n` chunks of 1000 bytes, then throws. */
async function* failingAfter(n: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < n; i++) yield new Uint8Array(1000).fill(i + 1);
  throw new Error('source failed mid-way');
}

/** Every file under `dir`, as '/'-separated relative paths, sorted. */
async function listAll(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1).split('\\').join('/')).sort();
}

describe('sink paths', () => {
  it('accepts relative paths and refuses escapes and empty segments', () => {
    expect(checkSinkPath('a/b.json')).toBe('a/b.json');
    for (const bad of ['', '/abs', 'a//b', '../x', 'a/./b', 'a/..', 'a\\b']) expect(() => checkSinkPath(bad)).toThrow(/not a relative/);
    expect(joinPath('', 'f')).toBe('f');
    expect(joinPath(undefined, 'f')).toBe('f');
    expect(joinPath('run/ckpt/', 'f')).toBe('run/ckpt/f');
  });
});

describe('memorySink', () => {
  it('stores files whole, concatenates, and reopens them as a FileSet', async () => {
    const sink = memorySink('mem');
    await sink.write('a.txt', [enc('hello '), enc('world')]);
    await sink.write('d/b.bin', (async function* () { yield new Uint8Array([1, 2, 3]); })());
    expect(new TextDecoder().decode(sink.bytes('a.txt'))).toBe('hello world');
    expect(await sink.blob('d/b.bin').arrayBuffer()).toEqual(new Uint8Array([1, 2, 3]).buffer);
    expect(sink.totalBytes()).toBe(14);
    const src = await sink.folder().open('a.txt');
    expect(new TextDecoder().decode(await src!.read(6, 5))).toBe('world');
    expect(await sink.folder().open('missing')).toBeNull();
    expect(() => sink.bytes('missing')).toThrow(/no file "missing"/);
  });

  it('a failed write keeps the previous version and adds nothing', async () => {
    const sink = memorySink();
    await sink.write('f', [enc('old')]);
    await expect(sink.write('f', failingAfter(2))).rejects.toThrow('source failed mid-way');
    await expect(sink.write('g', failingAfter(1))).rejects.toThrow('source failed mid-way');
    expect(new TextDecoder().decode(sink.bytes('f'))).toBe('old');
    expect([...sink.files.keys()]).toEqual(['f']);
  });
});

describe('nodeFileSink', () => {
  let remove: (() => Promise<void>) | null = null;
  afterEach(async () => { await remove?.(); remove = null; });

  it('creates parent folders and writes the exact bytes', async () => {
    const t = await tempFolder('sink');
    remove = t.remove;
    const sink = nodeFileSink(t.dir);
    await sink.write('x/y/z.bin', [new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3])]);
    await sink.write('top.txt', (async function* () { yield enc('a'); yield enc('b'); })());
    await sink.commit!();
    expect([...await readFile(join(t.dir, 'x/y/z.bin'))]).toEqual([1, 2, 3]);
    expect(await readFile(join(t.dir, 'top.txt'), 'utf8')).toBe('ab');
    expect(await listAll(t.dir)).toEqual(['top.txt', 'x/y/z.bin']);
  });

  it('a write that throws mid-way leaves no partial or temporary file, and the previous file intact', async () => {
    const t = await tempFolder('sink');
    remove = t.remove;
    const sink = nodeFileSink(t.dir, { fsync: false });
    await mkdir(join(t.dir, 'run'));
    await writeFile(join(t.dir, 'run/state.bin'), 'previous');
    await expect(sink.write('run/state.bin', failingAfter(3))).rejects.toThrow('source failed mid-way');
    await expect(sink.write('run/new.bin', failingAfter(2))).rejects.toThrow('source failed mid-way');
    expect(await listAll(t.dir)).toEqual(['run/state.bin']);
    expect(await readFile(join(t.dir, 'run/state.bin'), 'utf8')).toBe('previous');
    // and a successful write then replaces it
    await sink.write('run/state.bin', [enc('next')]);
    expect(await readFile(join(t.dir, 'run/state.bin'), 'utf8')).toBe('next');
    expect(await listAll(t.dir)).toEqual(['run/state.bin']);
  });

  it('refuses paths that leave its folder', async () => {
    const t = await tempFolder('sink');
    remove = t.remove;
    const sink = nodeFileSink(t.dir);
    await expect(sink.write('../escape.txt', [enc('x')])).rejects.toThrow(/not a relative/);
    expect(await listAll(t.dir)).toEqual([]);
  });
});

describe('removeOrphanTemps (usaf train --resume)', () => {
  it('removes the temporary files an interrupted write left (in subfolders too), nothing else', async () => {
    const t = await tempFolder('orphans');
    try {
      await mkdir(join(t.dir, 'export'));
      const files = ['train-state.safetensors', 'train-state.safetensors.tmp-0123456789ab', 'export/model.safetensors.tmp-abcdefabcdef',
        'export/model.safetensors', 'notes.tmp-1', 'log.jsonl'];
      for (const f of files) await writeFile(join(t.dir, f), 'x');
      // what a crash (kill -9, power loss) during a sink write leaves; a write that fails cleans up after itself
      const removed = (await removeOrphanTemps(t.dir)).map((p) => p.slice(t.dir.length + 1).split('\\').join('/')).sort();
      expect(removed).toEqual(['export/model.safetensors.tmp-abcdefabcdef', 'train-state.safetensors.tmp-0123456789ab']);
      expect(await listAll(t.dir)).toEqual(['export/model.safetensors', 'log.jsonl', 'notes.tmp-1', 'train-state.safetensors']);
      expect(await removeOrphanTemps(join(t.dir, 'missing'))).toEqual([]);
    } finally {
      await t.remove();
    }
  });
});
