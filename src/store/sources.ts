// Contract: where an import reads from — the app's own demo files, a URL prefix (Hub-style …/resolve/main/, read with
// Range requests) or files picked in the page — as a FileSet, with the id the model gets in the store.

import { fileMapFolder, urlFolder, type FileSet } from '../engine/io/folder.ts';
import { shortHash, slug } from './ids.ts';
import type { ModelSource } from './records.ts';

export const DEMO_MODEL_ID = 'usaf-demo-moe';

export interface DescribedSource {
  folder: FileSet;
  id: string;
  name: string;
  /** In words, kept in the manifest: "built-in demo", the URL, or the folder's name. */
  sourceText: string;
}

/** Drops the folder name a directory picker puts in front of every path ("mymodel/config.json" → "config.json"). */
export function stripCommonFolder(paths: string[]): (p: string) => string {
  const firsts = new Set(paths.map((p) => (p.includes('/') ? p.split('/')[0] : '')));
  if (firsts.size !== 1 || firsts.has('')) return (p) => p;
  const [first] = firsts;
  return (p) => p.slice(first!.length + 1);
}

/**
 * urlFolder, except that an HTML page answered for a file that is not HTML counts as missing: single-page-app hosts
 * (and dev servers) answer unknown paths with index.html and status 200.
 */
export function guardedUrlFolder(prefix: string): FileSet {
  const inner = urlFolder(prefix);
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  return {
    name: inner.name,
    open: async (relPath) => {
      if (!/\.html?$/i.test(relPath)) {
        const url = base + relPath.split('/').map(encodeURIComponent).join('/');
        const head = await fetch(url, { method: 'HEAD' });
        if (head.status === 404 || head.status === 410) return null;
        if ((head.headers.get('content-type') ?? '').toLowerCase().startsWith('text/html')) return null;
      }
      return inner.open(relPath);
    },
  };
}

/** The source's files and identity; `appBase` locates the demo files. ('stored' sources are resolved by the store.) */
export function describeSource(source: Exclude<ModelSource, { kind: 'stored' }>, appBase: string): DescribedSource {
  switch (source.kind) {
    case 'demo':
      return { folder: guardedUrlFolder(new URL(`models/${DEMO_MODEL_ID}/`, appBase).href), id: DEMO_MODEL_ID, name: DEMO_MODEL_ID, sourceText: 'built-in demo' };
    case 'url': {
      let url: URL;
      try {
        url = new URL(source.url);
      } catch {
        throw new Error(`"${source.url}" is not a URL`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`only http(s) URLs can be imported, not ${url.protocol}`);
      const name = source.name || url.pathname.split('/').filter(Boolean).slice(-3).join('-') || url.host;
      return { folder: guardedUrlFolder(url.href), id: `${slug(name)}-${shortHash(url.href)}`, name, sourceText: url.href };
    }
    case 'files': {
      const strip = stripCommonFolder(source.files.map((f) => f.path));
      const map = new Map(source.files.map((f) => [strip(f.path), f.file]));
      const key = [...map].map(([p, b]) => `${p}:${b.size}`).sort().join('|');
      return { folder: fileMapFolder(map, source.name), id: `${slug(source.name)}-${shortHash(key)}`, name: source.name, sourceText: `folder "${source.name}"` };
    }
  }
}

/** A small file of the source parsed as JSON; undefined when it is not there. */
export async function readJson(folder: FileSet, path: string): Promise<unknown | undefined> {
  const src = await folder.open(path);
  if (!src) return undefined;
  const bytes = await src.read(0, await src.size());
  await src.close?.();
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${path} in ${folder.name} is not valid JSON: ${(e as Error).message}`);
  }
}
