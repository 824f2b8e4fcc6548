// Where a stored model's original weights are: the folder handle kept at import wins; else the demo's files under the
// app, a URL import's URL; a folder imported without a handle (dropped, or the folder input) has none.
import { describe, expect, it } from 'vitest';
import { originOf, originText, readPermission, type ModelOrigin, type OriginKv } from '../../../src/store/origins.ts';
import { asRoot, FakeDir } from './fake-opfs.ts';

const kv = (entries: [string, ModelOrigin][] = []): OriginKv => {
  const m = new Map(entries);
  return { get: async (id) => m.get(id), set: async (id, o) => void m.set(id, o) };
};

describe('originOf', () => {
  it('prefers the folder kept at import, then the manifest: demo files under the app, a URL, or nothing', async () => {
    const handle = asRoot(new FakeDir('Qwen3-30B-A3B'));
    const kept: ModelOrigin = { kind: 'folder', name: 'Qwen3-30B-A3B', handle };
    expect(await originOf(kv([['m1', kept]]), { id: 'm1', builtin: false, source: 'folder "Qwen3-30B-A3B"' }, 'https://app.example/usaf/')).toBe(kept);
    expect(await originOf(kv(), { id: 'usaf-demo-moe', builtin: true, source: 'built-in demo' }, 'https://app.example/usaf/'))
      .toEqual({ kind: 'url', url: 'https://app.example/usaf/models/usaf-demo-moe/' });
    const hub = 'https://huggingface.co/Qwen/Qwen3-30B-A3B/resolve/main/';
    expect(await originOf(kv(), { id: 'q', builtin: false, source: hub }, 'https://app.example/')).toEqual({ kind: 'url', url: hub });
    expect(await originOf(kv(), { id: 'd', builtin: false, source: 'folder "dropped"' }, 'https://app.example/')).toBeNull();
    expect(originText(kept)).toBe('Qwen3-30B-A3B');
    expect(originText({ kind: 'url', url: hub })).toBe(hub);
  });

  it('reads the permission the browser answers for a folder handle', async () => {
    const asked: unknown[] = [];
    const handle = { queryPermission: async (d: unknown) => { asked.push(d); return 'prompt'; } } as unknown as FileSystemDirectoryHandle;
    expect(await readPermission(handle)).toBe('prompt');
    expect(asked).toEqual([{ mode: 'read' }]);
    expect(await readPermission(asRoot(new FakeDir('x')))).toBe('granted'); // no permission API: OPFS, older browsers
  });
});
