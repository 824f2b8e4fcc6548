// A static file server like any static host, for the browser tests (scripts/e2e.mjs) and the scale rehearsal
// (bench/scale/chromium.mjs): GET/HEAD, single byte ranges, 404 for what is not there (no SPA fallback), on 127.0.0.1.

import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.jsonl': 'application/jsonl', '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.wasm': 'application/wasm', '.wgsl': 'text/plain',
  '.safetensors': 'application/octet-stream', '.txt': 'text/plain',
};

/** Answers `req` with the file at URL path `urlPath` below `dir` (index.html for a folder). */
export function serveFile(req, res, dir, urlPath) {
  let path;
  try {
    path = normalize(join(dir, decodeURIComponent(urlPath)));
  } catch {
    res.writeHead(400).end();
    return;
  }
  if (path !== dir && !path.startsWith(dir + sep)) {
    res.writeHead(403).end();
    return;
  }
  if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
  if (!existsSync(path) || !statSync(path).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const size = statSync(path).size;
  const headers = { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'accept-ranges': 'bytes', 'cache-control': 'no-cache' };
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    const end = Math.min(size - 1, range[2] ? Number(range[2]) : size - 1);
    if (start >= size || end < start) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}` });
    if (req.method === 'HEAD') res.end();
    else createReadStream(path, { start, end }).pipe(res);
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': size });
  if (req.method === 'HEAD') res.end();
  else createReadStream(path).pipe(res);
}

/**
 * Listens on 127.0.0.1 (a free port). `mounts`: [URL path prefix ending in '/', folder] pairs, the first match serves;
 * `route(req, res, server)` may answer a request first (return true) or rewrite req.url and re-emit it.
 */
export function serveStatic(mounts, route = () => false) {
  const server = createServer((req, res) => {
    if (route(req, res, server)) return;
    const { pathname } = new URL(req.url ?? '/', 'http://x');
    const m = mounts.find(([prefix]) => pathname.startsWith(prefix));
    if (!m) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    serveFile(req, res, m[1], pathname.slice(m[0].length - 1));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}
