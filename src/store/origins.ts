// Contract: where a stored model's original weights are (an export merges the run's delta onto them): the folder the
// user imported from (its FileSystemDirectoryHandle, kept in IndexedDB through idb-keyval) or the URL prefix.

import { createStore, get, set, type UseStore } from 'idb-keyval';
import type { FileSet } from '../engine/io/folder.ts';
import { opfsFolder } from './opfs.ts';
import { DEMO_MODEL_ID, guardedUrlFolder } from './sources.ts';

export type ModelOrigin =
  | { kind: 'url'; url: string }
  | { kind: 'folder'; name: string; handle: FileSystemDirectoryHandle };

/** The key-value calls the origins need (idb-keyval in the browser; a Map in unit tests). */
export interface OriginKv {
  get(id: string): Promise<ModelOrigin | undefined>;
  set(id: string, o: ModelOrigin): Promise<void>;
}

export const ORIGIN_DB = 'usaf-origins';
export const ORIGIN_TABLE = 'origins';

export function idbOrigins(): OriginKv {
  let store: UseStore | null = null;
  const s = (): UseStore => (store ??= createStore(ORIGIN_DB, ORIGIN_TABLE));
  return { get: (id) => get<ModelOrigin>(id, s()), set: (id, o) => set(id, o, s()) };
}

/** The fields of a stored model (StoredModel) that say where it came from. */
export interface OriginFacts {
  id: string;
  builtin: boolean;
  /** "built-in demo", the URL, or `folder "name"`. */
  source: string;
}

/**
 * The model's origin: the one recorded at import, else what its manifest says (the demo's files ship with the app at
 * `appBase`; a URL import names its URL); null for a folder import whose handle was not kept.
 */
export async function originOf(kv: OriginKv, m: OriginFacts, appBase: string): Promise<ModelOrigin | null> {
  const saved = await kv.get(m.id);
  if (saved) return saved;
  if (m.builtin) return { kind: 'url', url: new URL(`models/${DEMO_MODEL_ID}/`, appBase).href };
  if (/^https?:\/\//.test(m.source)) return { kind: 'url', url: m.source };
  return null;
}

/** The origin's files. A folder handle must have read permission (the page asks for it: requestPermission). */
export function originFolder(o: ModelOrigin): FileSet {
  return o.kind === 'url' ? guardedUrlFolder(o.url) : opfsFolder(o.handle, o.name);
}

/** The origin in words, for messages and for the `usaf merge --base` argument. */
export const originText = (o: ModelOrigin): string => (o.kind === 'url' ? o.url : o.name);

/** 'granted', 'prompt' or 'denied' for reading a folder handle ('granted' where the browser has no permission API). */
export async function readPermission(handle: FileSystemDirectoryHandle): Promise<PermissionState> {
  const q = (handle as unknown as { queryPermission?(d: { mode: 'read' }): Promise<PermissionState> }).queryPermission;
  return q ? q.call(handle, { mode: 'read' }) : 'granted';
}
