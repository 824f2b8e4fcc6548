// A model folder as a set of named files: open(relPath) gives a ByteSource, or null when the file is not there.
// Engine implementations over a map of Files/Blobs and over a URL prefix; the Node one lives in src/node/folder.ts.

import { blobSource, HttpStatusError, urlSource, type ByteSource, type FetchFn } from './byte-source.ts';

export interface FileSet {
  /** Short name for error messages (a folder name or URL prefix). */
  readonly name: string;
  /** The file at `relPath` ('/'-separated, relative to the folder), or null when there is none. */
  open(relPath: string): Promise<ByteSource | null>;
}

/** Files keyed by their path relative to the model folder (e.g. "model-00001-of-00004.safetensors"). */
export function fileMapFolder(files: ReadonlyMap<string, Blob>, name: string = 'selected files'): FileSet {
  return {
    name,
    open: async (relPath) => {
      const blob = files.get(relPath) ?? files.get(relPath.replace(/^\.\//, ''));
      return blob ? blobSource(blob, relPath) : null;
    },
  };
}

/**
 * Files under a URL prefix (a Hub `resolve/main/` URL, a static server folder). A file whose size probe answers
 * 404 or 410 counts as missing; any other failure is thrown.
 */
export function urlFolder(prefix: string, fetchFn: FetchFn = (u, init) => fetch(u, init)): FileSet {
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  return {
    name: base,
    open: async (relPath) => {
      const url = base + relPath.split('/').map(encodeURIComponent).join('/');
      const source = urlSource(url, fetchFn, relPath);
      try {
        await source.size();
      } catch (e) {
        if (e instanceof HttpStatusError && (e.status === 404 || e.status === 410)) return null;
        throw e;
      }
      return source;
    },
  };
}
