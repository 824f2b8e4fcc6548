// urlSource/urlFolder against fake fetch functions (Range honoured, Range ignored, no HEAD) and a real local HTTP server.
// Every read is compared with the bytes served; request logs show which requests were made.

import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpStatusError, urlSource, type FetchFn } from '../../../src/engine/io/byte-source.ts';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { urlFolder } from '../../../src/engine/io/folder.ts';
import { openSafetensors } from '../../../src/engine/io/safetensors.ts';
import { encodeSafetensors } from '../../../src/engine/io/safetensors-write.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { concat, randomBytes } from './helpers.ts';

interface Served { method: string; url: string; range: string | null; status: number }

/** A fetch over in-memory files; `honourRange` false answers every GET with 200 and the whole body. */
function fakeFetch(files: Record<string, Uint8Array>, opts: { honourRange: boolean; head: boolean }): FetchFn & { log: Served[] } {
  const log: Served[] = [];
  const fn = async (url: string, init?: RequestInit): Promise<Response> => {
    const method = init?.method ?? 'GET';
    const range = new Headers(init?.headers).get('range');
    const body = files[url];
    const answer = (status: number, data: Uint8Array | null, headers: Record<string, string> = {}): Response => {
      log.push({ method, url, range, status });
      return new Response(data && method !== 'HEAD' ? data.slice() : null, { status, headers });
    };
    if (!body) return answer(404, null);
    if (method === 'HEAD') return opts.head ? answer(200, null, { 'content-length': String(body.byteLength) }) : answer(405, null);
    const m = range ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
    if (!m || !opts.honourRange) return answer(200, body, { 'content-length': String(body.byteLength) });
    const [a, b] = [Number(m[1]), Math.min(Number(m[2]), body.byteLength - 1)];
    if (a >= body.byteLength) return answer(416, null, { 'content-range': `bytes */${body.byteLength}` });
    return answer(206, body.subarray(a, b + 1), { 'content-range': `bytes ${a}-${b}/${body.byteLength}` });
  };
  return Object.assign(fn, { log });
}

const FILE = randomBytes(5000, 11);
const URL0 = 'https://example.test/m/model.safetensors';

describe('urlSource with a fake fetch', () => {
  it('uses Range requests when the server honours them', async () => {
    const f = fakeFetch({ [URL0]: FILE }, { honourRange: true, head: true });
    const src = urlSource(URL0, f);
    expect(await src.size()).toBe(5000);
    expect(await src.read(100, 50)).toEqual(FILE.subarray(100, 150));
    expect(await src.read(4990, 10)).toEqual(FILE.subarray(4990));
    expect(await src.read(7, 0)).toEqual(new Uint8Array(0));
    expect(f.log.map((r) => `${r.method} ${r.range} ${r.status}`)).toEqual([
      'HEAD null 200', 'GET bytes=100-149 206', 'GET bytes=4990-4999 206',
    ]);
    await expect(src.read(4999, 5)).rejects.toThrow(/4 bytes|sent/);
  });

  it('takes the size from Content-Range when HEAD is refused', async () => {
    const f = fakeFetch({ [URL0]: FILE }, { honourRange: true, head: false });
    expect(await urlSource(URL0, f).size()).toBe(5000);
    expect(f.log.map((r) => `${r.method} ${r.range} ${r.status}`)).toEqual(['HEAD null 405', 'GET bytes=0-0 206']);
  });

  it('falls back to one whole-body read, shared by all reads, when Range is ignored', async () => {
    const f = fakeFetch({ [URL0]: FILE }, { honourRange: false, head: false });
    const src = urlSource(URL0, f);
    const reads = await Promise.all([src.read(0, 10), src.read(2000, 300), src.read(4000, 1000)]);
    expect(reads).toEqual([FILE.subarray(0, 10), FILE.subarray(2000, 2300), FILE.subarray(4000)]);
    expect(await src.read(123, 4)).toEqual(FILE.subarray(123, 127));
    expect(await src.size()).toBe(5000);
    const gets = f.log.filter((r) => r.method === 'GET');
    expect(gets.length).toBeLessThanOrEqual(3); // the concurrent first reads; nothing after the body is known
    expect(f.log.length).toBe(gets.length + 1); // + the refused HEAD
    await expect(src.read(4999, 5)).rejects.toThrow(/runs past the end/);
  });

  it('refuses a file larger than the whole-body cap from a server that ignores Range (with and without Content-Length)', async () => {
    const f = fakeFetch({ [URL0]: FILE }, { honourRange: false, head: false });
    await expect(urlSource(URL0, f, 'model.safetensors', 4999).read(0, 10)).rejects.toThrow(
      /model\.safetensors: the server ignores Range requests and the file is 5000 bytes, more than the 4999 .* import it from a folder/);
    const chunked: FetchFn = async () => new Response(new ReadableStream({
      start(c) { c.enqueue(FILE.slice(0, 3000)); c.enqueue(FILE.slice(3000)); c.close(); },
    }), { status: 200 });
    await expect(urlSource(URL0, chunked, 'm', 4000).read(0, 10)).rejects.toThrow(/file is over 4000 bytes/);
    expect(await urlSource(URL0, chunked, 'm', 5000).read(4990, 10)).toEqual(FILE.subarray(4990));
  });

  it('reports HTTP errors with their status', async () => {
    const f = fakeFetch({}, { honourRange: true, head: true });
    const e = await urlSource(URL0, f).size().then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(HttpStatusError);
    expect((e as HttpStatusError).status).toBe(404);
  });

  it('urlFolder opens a sharded checkpoint both with and without Range support', async () => {
    const a = { name: 'a.weight', dtype: 'F32' as const, shape: [3, 5], data: randomBytes(60, 1) };
    const b = { name: 'b.weight', dtype: 'BF16' as const, shape: [7], data: randomBytes(14, 2) };
    const base = 'https://example.test/repo/resolve/main/';
    const files: Record<string, Uint8Array> = {
      [`${base}s%201.safetensors`]: concat(encodeSafetensors([a])),
      [`${base}sub/s2.safetensors`]: concat(encodeSafetensors([b])),
      [`${base}model.safetensors.index.json`]: new TextEncoder().encode(JSON.stringify({
        weight_map: { 'a.weight': 's 1.safetensors', 'b.weight': 'sub/s2.safetensors' },
      })),
    };
    for (const honourRange of [true, false]) {
      const f = fakeFetch(files, { honourRange, head: true });
      const ckpt = await openCheckpoint(urlFolder(base.slice(0, -1), f));
      expect(await ckpt.readTensor('a.weight')).toEqual(a.data);
      expect(await ckpt.readTensor('b.weight')).toEqual(b.data);
      expect(f.log.filter((r) => r.status === 404).map((r) => r.url)).toEqual([`${base}model.safetensors`]);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const QWEN = fileURLToPath(new URL('../../fixtures/qwen3_moe/', import.meta.url));

describe('urlSource against a local HTTP server', { timeout: 15_000 }, () => {
  let server: Server;
  let base = '';
  const log: Served[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const name = decodeURIComponent((req.url ?? '/').slice(1));
      const entry = (s: number): void => { log.push({ method: req.method ?? '', url: name, range: req.headers.range ?? null, status: s }); };
      let body: Buffer;
      try {
        if (name.includes('/') || name.startsWith('.')) throw new Error('outside');
        body = readFileSync(join(QWEN, name));
      } catch {
        entry(404); res.writeHead(404).end(); return;
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m && req.method === 'GET') {
        const a = Number(m[1]);
        const b = Math.min(Number(m[2]), body.byteLength - 1);
        entry(206);
        res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${body.byteLength}`, 'content-length': b - a + 1 });
        res.end(body.subarray(a, b + 1));
        return;
      }
      entry(200);
      res.writeHead(200, { 'content-length': body.byteLength, 'accept-ranges': 'bytes' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    server.requestTimeout = 5000;
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no port');
    base = `http://127.0.0.1:${addr.port}/`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  });

  it('opens the fixture over HTTP with Range reads and gets the same tensors as from disk', async () => {
    const remote = await openCheckpoint(urlFolder(base));
    const local = await openCheckpoint(nodeFolder(QWEN));
    expect([...remote.tensors.values()]).toEqual([...local.tensors.values()]);
    const names = ['model.embed_tokens.weight', 'model.layers.2.mlp.experts.5.down_proj.weight', 'model.norm.weight'];
    log.length = 0;
    for (const n of names) expect(await remote.readTensor(n)).toEqual(await local.readTensor(n));
    expect(log.map((r) => r.status)).toEqual([206, 206, 206]);
    const served = log.map((r) => { const [a, b] = r.range!.slice(6).split('-').map(Number); return b - a + 1; });
    expect(served).toEqual(names.map((n) => remote.tensors.get(n)!.byteLength));

    const ref = await openSafetensors((await urlFolder(base).open('reference.safetensors'))!);
    expect(ref.tensors.get('input_ids')).toMatchObject({ dtype: 'I32', shape: [2, 24] });
    expect(await urlFolder(base).open('missing.json')).toBeNull();
    await local.close();
  });
});
