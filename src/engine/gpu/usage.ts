// WebGPU usage flags as plain numbers (the spec's values), so engine modules can be evaluated
// before Node's WebGPU globals exist.
export const Usage = {
  MAP_READ: 1,
  MAP_WRITE: 2,
  COPY_SRC: 4,
  COPY_DST: 8,
  UNIFORM: 64,
  STORAGE: 128,
  INDIRECT: 256,
  QUERY_RESOLVE: 512,
} as const;
export const MAP_READ_MODE = 1;
