// Sets of entry indices as ascending Uint32Arrays (active sets, touched sets), and per-entry values carried between them.

/** Sorted-set difference size |a − b| (both ascending). */
export function countNotIn(a: Uint32Array, b: Uint32Array): number {
  let i = 0, j = 0, n = 0;
  while (i < a.length) {
    if (j >= b.length || a[i]! < b[j]!) (n++, i++);
    else if (a[i] === b[j]) (i++, j++);
    else j++;
  }
  return n;
}

/** Elements of a not in b (ascending). */
export function setMinus(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length);
  let j = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    while (j < b.length && b[j]! < a[i]!) j++;
    if (j >= b.length || b[j] !== a[i]) out[n++] = a[i]!;
  }
  return out.slice(0, n);
}

export function union(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0, j = 0, n = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!;
    if (n === 0 || out[n - 1] !== x) out[n++] = x;
  }
  return out.slice(0, n);
}

/** Adam moments of the entries of `fresh` that were in `old` (both ascending); zero for grown entries. */
export function carryMoments(old: Uint32Array, m: Float32Array, v: Float32Array, fresh: Uint32Array): [Float32Array, Float32Array] {
  return [carryValues(old, m, fresh), carryValues(old, v, fresh)];
}

/** Per-entry values (`vals` [old.length]) of the entries of `fresh` that were in `old` (both ascending); zero for grown ones. */
export function carryValues<T extends Float32Array | Uint32Array>(old: Uint32Array, vals: T, fresh: Uint32Array): T {
  const out = new (vals.constructor as new (n: number) => T)(fresh.length);
  let j = 0;
  for (let i = 0; i < fresh.length; i++) {
    while (j < old.length && old[j]! < fresh[i]!) j++;
    if (j < old.length && old[j] === fresh[i]) out[i] = vals[j]!;
  }
  return out;
}

/** First position in ascending `a` whose value is ≥ v. */
export function lowerBound(a: Uint32Array, v: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) { const m = (lo + hi) >>> 1; if (a[m]! < v) lo = m + 1; else hi = m; }
  return lo;
}
