// Workgroup grids for the one-thread-per-item quant kernels: items past 65535 workgroups spill into y.
// Shaders recover the item as (wid.y * num_workgroups.x + wid.x) * WG + local_invocation_id.x and skip ids past the count.

/** [x, y] workgroups covering `items` with `perWorkgroup` threads each, x at most `maxPerDim`. */
export function grid2d(items: number, perWorkgroup: number, maxPerDim = 65535): [number, number] {
  const n = Math.ceil(items / perWorkgroup);
  if (n <= maxPerDim) return [n, 1];
  const y = Math.ceil(n / maxPerDim);
  return [Math.ceil(n / y), y];
}
