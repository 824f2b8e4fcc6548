// OPFS write and read speed in Debian's Chromium, from a worker, as the app's exports write: 8 MiB pieces into one file
// through a writable stream (createWritable) and through a synchronous access handle; then the file read back in 8 MiB
// slices of its File (what a download or a stored model's reader does). Prints one JSON object (MB/s = 1e6 B/s).
// Usage: node bench/opfs/write.mjs [MiB, default 1024]. Wall times depend on the machine's load: it is printed beside.
import http from 'node:http';
import { loadavg } from 'node:os';
import { chromium } from 'playwright-core';

const mib = Number(process.argv[2] ?? 1024);
const server = http.createServer((_, res) => { res.setHeader('content-type', 'text/html'); res.end('<!doctype html><title>opfs</title>'); }).listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const load0 = loadavg()[0];
  const r = await page.evaluate(async (mib) => {
    const code = `onmessage = async (e) => {
      const piece = 8 << 20, total = e.data * (1 << 20);
      const root = await navigator.storage.getDirectory();
      const buf = new Uint8Array(piece);
      for (let i = 0; i < piece; i++) buf[i] = (i * 2654435761) >>> 24;
      const out = {};
      let t = performance.now();
      const a = await root.getFileHandle('stream.bin', { create: true });
      const w = await a.createWritable({ keepExistingData: false });
      for (let at = 0; at < total; at += piece) await w.write(buf.slice());
      await w.close();
      out.stream_s = (performance.now() - t) / 1000;
      t = performance.now();
      const b = await root.getFileHandle('sync.bin', { create: true });
      const h = await b.createSyncAccessHandle();
      h.truncate(0);
      for (let at = 0; at < total; at += piece) h.write(buf, { at });
      h.flush();
      h.close();
      out.sync_s = (performance.now() - t) / 1000;
      t = performance.now();
      const f = await b.getFile();
      for (let at = 0; at < f.size; at += piece) await f.slice(at, at + piece).arrayBuffer();
      out.read_s = (performance.now() - t) / 1000;
      await root.removeEntry('stream.bin');
      await root.removeEntry('sync.bin');
      postMessage(out);
    };`;
    const worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
    return await new Promise((res) => { worker.onmessage = (e) => res(e.data); worker.postMessage(mib); });
  }, mib);
  const mbs = (s) => +((mib * 2 ** 20) / 1e6 / s).toFixed(1);
  console.log(JSON.stringify({
    bytes: mib * 2 ** 20, piece_bytes: 8 << 20, chromium: browser.version(),
    write_stream: { s: +r.stream_s.toFixed(2), mb_s: mbs(r.stream_s) }, write_sync: { s: +r.sync_s.toFixed(2), mb_s: mbs(r.sync_s) },
    read_file: { s: +r.read_s.toFixed(2), mb_s: mbs(r.read_s) }, sync_over_stream: +(r.stream_s / r.sync_s).toFixed(2),
    load_avg_1min: { before: +load0.toFixed(1), after: +loadavg()[0].toFixed(1) }, date: new Date().toISOString(),
  }));
} finally {
  await browser.close();
  server.close();
}
