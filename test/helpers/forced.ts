// Runs a test body with a launcher's tiling forced (ops/matmul.ts forceMatmulTiling, ops/experts.ts forceExpertsTiling),
// restoring the adapter's own choice afterwards even when the body throws.

export async function withForced<T>(force: (t: T | null) => void, t: T | null, f: () => Promise<void>): Promise<void> {
  force(t);
  try {
    await f();
  } finally {
    force(null);
  }
}
