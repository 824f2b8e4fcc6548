// Browser side of merge.mjs: in a dedicated worker (as the app's export), the app's merge (mergeModel) of the original
// behind a URL + a delta into an OPFS folder through the app's folder sink, and the pieces apart: range reads alone,
// CRC-32 alone, sync-handle writes alone.
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { urlFolder, type FileSet } from '../../src/engine/io/folder.ts';
import type { FileSink } from '../../src/engine/io/sink.ts';
import { crc32 } from '../../src/engine/train/delta.ts';
import { mergeModel } from '../../src/engine/train/merge.ts';
import { readAheadFolder } from '../../src/engine/io/read-ahead.ts';
import { openFolderSink } from '../../src/store/folder-sink.ts';
import { removeEntry } from '../../src/store/opfs.ts';

interface Job { model: string; delta: string; files: string[]; what: string[]; window: number }

onmessage = async (e: MessageEvent<Job>) => {
  const { model, delta, files, what, window } = e.data;
  const out: Record<string, unknown> = {};
  const root = await navigator.storage.getDirectory();
  try {
    const CH = 64 << 20;
    if (what.includes('read')) {
      let t = performance.now(), n = 0;
      const folder = urlFolder(model);
      for (const f of files) {
        const src = (await folder.open(f))!;
        const size = await src.size();
        for (let at = 0; at < size; at += CH) n += (await src.read(at, Math.min(CH, size - at))).byteLength;
      }
      out.read = { s: (performance.now() - t) / 1000, bytes: n };
      const buf = new Uint8Array(CH);
      for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
      t = performance.now();
      let c = 0;
      for (let k = 0; k < 8; k++) c = crc32(buf, c);
      out.crc = { s: (performance.now() - t) / 1000, bytes: 8 * CH };
      t = performance.now();
      const h = await (await root.getFileHandle('bench.bin', { create: true })).createSyncAccessHandle();
      for (let k = 0; k < 8; k++) h.write(buf, { at: k * CH });
      h.flush(); h.close();
      out.write = { s: (performance.now() - t) / 1000, bytes: 8 * CH };
      await removeEntry(root, 'bench.bin');
    }
    if (what.includes('fetch')) {
      // the shards by plain range fetches: piece size, how many in flight, arrayBuffer() or a BYOB read into one buffer
      const urls = files.map((f) => model + f);
      const sizes = await Promise.all(urls.map(async (u) => Number((await fetch(u, { method: 'HEAD' })).headers.get('content-length'))));
      const total = sizes.reduce((a, b) => a + b, 0);
      const get = async (u: string, at: number, n: number, byob: boolean): Promise<number> => {
        const res = await fetch(u, { headers: { Range: `bytes=${at}-${at + n - 1}` } });
        if (!byob) return (await res.arrayBuffer()).byteLength;
        let buf = new Uint8Array(n), got = 0;
        const rd = res.body!.getReader({ mode: 'byob' });
        while (got < n) {
          const { done, value } = await rd.read(new Uint8Array(buf.buffer, got, n - got));
          if (done) break;
          got += value.byteLength;
          buf = new Uint8Array(value.buffer);
        }
        return got;
      };
      for (const [piece, depth, byob] of [[3 << 20, 1, false], [3 << 20, 2, false], [3 << 20, 4, false], [64 << 20, 1, false], [64 << 20, 1, true], [16 << 20, 2, true], [64 << 20, 2, false]] as const) {
        const t = performance.now();
        const inflight: Promise<number>[] = [];
        let n = 0;
        for (let f = 0; f < urls.length; f++) {
          for (let at = 0; at < sizes[f]!; at += piece) {
            if (inflight.length >= depth) n += await inflight.shift()!;
            inflight.push(get(urls[f]!, at, Math.min(piece, sizes[f]! - at), byob));
          }
        }
        for (const p of inflight) n += await p;
        if (n !== total) throw new Error(`read ${n} of ${total}`);
        out[`fetch_${piece >> 20}MiB_x${depth}${byob ? '_byob' : ''}`] = { s: (performance.now() - t) / 1000, bytes: n };
      }
    }
    if (what.includes('merge')) {
      const d = new Uint8Array(await (await fetch(delta)).arrayBuffer());
      const dir = await root.getDirectoryHandle('bench-merge', { create: true });
      const sink = await openFolderSink(dir, { job: `bench:${Date.now()}`, clearOther: true });
      // time spent waiting on the merge's chunks (reads, CRC, merging) vs handing them to the sink (gathering, writing)
      let waitMs = 0, sinkMs = 0, reads = 0, readMs = 0;
      const timed: FileSink = {
        name: sink.name,
        write: (path, chunks) => sink.write(path, (async function* () {
          let t0 = performance.now();
          for await (const c of chunks as AsyncIterable<Uint8Array>) {
            const t1 = performance.now();
            waitMs += t1 - t0;
            yield c;
            t0 = performance.now();
            sinkMs += t0 - t1;
          }
        })()),
      };
      const inner = window > 0 ? readAheadFolder(urlFolder(model), { windowBytes: window }) : urlFolder(model);
      const counted: FileSet = {
        name: inner.name,
        open: async (p) => {
          const src = await inner.open(p);
          return src && { ...src, read: async (o: number, n: number) => { const t0 = performance.now(); reads++; try { return await src.read(o, n); } finally { readMs += performance.now() - t0; } } };
        },
      };
      const t = performance.now();
      const r = await mergeModel(counted, memorySource(d, 'usaf-delta.safetensors'), timed);
      out.mergeParts = { wait_s: waitMs / 1000, sink_s: sinkMs / 1000, reads, read_s: readMs / 1000 };
      await sink.finish();
      out.merge = { s: (performance.now() - t) / 1000, bytes: r.bytes, shards: r.shards, peakHeld: sink.peakHeldBytes };
    }
    postMessage({ ok: out });
  } catch (err) {
    postMessage({ error: String((err as Error)?.stack ?? err) });
  }
};
