// Contract: the storage check before an import: the bytes the 4-bit store will need (from the source's headers) against
// what navigator.storage.estimate() leaves to the site; a refusal names both figures.

export interface StorageEstimateLike {
  usage?: number;
  quota?: number;
}

export class StorageRefusal extends Error {
  constructor(readonly neededBytes: number, readonly availableBytes: number, what: string) {
    super(`Not enough storage to import ${what}: it needs ${mb(neededBytes)} (${neededBytes.toLocaleString('en-US')} bytes, experts in 4 bits) `
      + `and this site has ${mb(availableBytes)} (${availableBytes.toLocaleString('en-US')} bytes) available. `
      + 'Delete models or datasets you no longer need, or free disk space, and import again.');
    this.name = 'StorageRefusal';
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

/** Bytes left to the site, or null when the browser does not say. */
export function availableBytes(est: StorageEstimateLike): number | null {
  if (typeof est.quota !== 'number' || !Number.isFinite(est.quota)) return null;
  return Math.max(0, est.quota - (est.usage ?? 0));
}

/** Throws a StorageRefusal when `neededBytes` more do not fit; an unknown estimate lets the import try. */
export function checkFits(neededBytes: number, est: StorageEstimateLike, what: string): void {
  const avail = availableBytes(est);
  if (avail !== null && neededBytes > avail) throw new StorageRefusal(neededBytes, avail, what);
}

/**
 * Cap on one shard's tensor data in the browser store: a sixteenth of the model, between 1 MiB and 256 MiB. An
 * interrupted import redoes at most one shard, and a 30B model is ~64 files.
 */
export function shardCap(modelBytes: number): number {
  return Math.min(256 << 20, Math.max(1 << 20, Math.ceil(modelBytes / 16)));
}
