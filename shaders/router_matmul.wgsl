// Router projections as one strided, workgroup-tiled matmul: C[m, n] (+)= sum_k A[m*sAm + k*sAk] * B[k*sBk + n*sBn].
// logits = x·Wr^T, dx (+)= dLogits·Wr and dWr (+)= dLogits^T·x are this with different strides. f32 throughout.

struct Params { M: u32, N: u32, K: u32, sAm: u32, sAk: u32, sBk: u32, sBn: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;           // [M, K] through (sAm, sAk)
@group(0) @binding(1) var<storage, read> b: array<f32>;           // [K, N] through (sBk, sBn)
@group(0) @binding(2) var<storage, read_write> c: array<f32>;     // [M, N] row-major
@group(0) @binding(3) var<uniform> p: Params;

override TS: u32 = 16;   // square tile: TS x TS threads, one output each
var<workgroup> as_: array<f32, TS * TS>;   // [m][k]
var<workgroup> bs: array<f32, TS * TS>;    // [k][n]

@compute @workgroup_size(TS, TS)
fn matmul(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m = wid.y * TS + lid.y;
  let n = wid.x * TS + lid.x;
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.K; k0 += TS) {
    // A tile: thread (x, y) loads A[wid.y*TS + y, k0 + x]; B tile: B[k0 + y, wid.x*TS + x]
    let ka = k0 + lid.x;
    var av = 0.0;
    if (m < p.M && ka < p.K) { av = a[m * p.sAm + ka * p.sAk]; }
    as_[lid.y * TS + lid.x] = av;
    let kb = k0 + lid.y;
    var bv = 0.0;
    if (n < p.N && kb < p.K) { bv = b[kb * p.sBk + n * p.sBn]; }
    bs[lid.y * TS + lid.x] = bv;
    workgroupBarrier();
    for (var kk = 0u; kk < TS; kk++) { acc += as_[lid.y * TS + kk] * bs[kk * TS + lid.x]; }
    workgroupBarrier();
  }
  if (m < p.M && n < p.N) {
    if (p.accumulate != 0u) { c[m * p.N + n] += acc; } else { c[m * p.N + n] = acc; }
  }
}
