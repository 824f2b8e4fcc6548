// Contract: model manifests (the StoredModel records) in IndexedDB through idb-keyval, one key per model id. A manifest
// is written only after every file of its model is in OPFS, so a model is listed exactly when it is complete.

import { createStore, del, entries, get, set } from 'idb-keyval';
import type { StoredModel } from './records.ts';

/** The key-value calls the store needs (idb-keyval in the browser; a Map in unit tests). */
export interface ManifestKv {
  get(id: string): Promise<StoredModel | undefined>;
  set(id: string, m: StoredModel): Promise<void>;
  del(id: string): Promise<void>;
  all(): Promise<StoredModel[]>;
}

export const MANIFEST_DB = 'usaf-store';
export const MANIFEST_TABLE = 'models';

export function idbManifests(): ManifestKv {
  const store = createStore(MANIFEST_DB, MANIFEST_TABLE);
  return {
    get: (id) => get<StoredModel>(id, store),
    set: (id, m) => set(id, m, store),
    del: (id) => del(id, store),
    all: async () => (await entries<string, StoredModel>(store)).map(([, m]) => m),
  };
}

export function memoryManifests(): ManifestKv & { map: Map<string, StoredModel> } {
  const map = new Map<string, StoredModel>();
  return {
    map,
    get: async (id) => structuredClone(map.get(id)),
    set: async (id, m) => void map.set(id, structuredClone(m)),
    del: async (id) => void map.delete(id),
    all: async () => [...map.values()].map((m) => structuredClone(m)),
  };
}
