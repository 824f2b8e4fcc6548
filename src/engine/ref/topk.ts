// CPU oracle of top-k selection (tests only): sort by |x| descending (as f32), ties by lower index, take k, sort ascending.
// Same signature as ops/topk.ts minus the workspace.

/** indices [k] = indices of the k largest |x[i]| of x [n], ascending; ties at the threshold -> lowest indices. */
export function topkSelect(indices: Uint32Array, x: ArrayLike<number>, n: number, k: number): void {
  const mag = Float32Array.from({ length: n }, (_, i) => Math.abs(x[i]!));
  const keyOf = (i: number) => (Number.isNaN(mag[i]!) ? Infinity : mag[i]!);
  const nanFirst = (i: number) => (Number.isNaN(mag[i]!) ? 1 : 0);
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => nanFirst(b) - nanFirst(a) || keyOf(b) - keyOf(a) || a - b);
  indices.set(order.slice(0, k).sort((a, b) => a - b));
}
