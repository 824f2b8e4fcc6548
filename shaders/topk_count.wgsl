// Top-k compaction 1/2: per contiguous chunk (one workgroup), count keys above the threshold and equal to it.

struct Params { n: u32, k: u32, shift: u32, bits: u32, round: u32, nChunks: u32, chunkSize: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;                  // [n]
@group(0) @binding(1) var<storage, read_write> ws: array<u32>;           // [2048] threshold key, [2056 + 2c] chunk counts
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256;
const STATE = 2048u;
const CHUNKS = 2056u;
var<workgroup> sums: array<vec2u, WG>;

@compute @workgroup_size(WG)
fn count(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let tau = ws[STATE];
  let start = wid.x * p.chunkSize;
  let end = min(start + p.chunkSize, p.n);
  var c = vec2u(0u);
  for (var i = start + lid; i < end; i += WG) {
    let key = bitcast<u32>(x[i]) & 0x7fffffffu;
    c += vec2u(select(0u, 1u, key > tau), select(0u, 1u, key == tau));
  }
  sums[lid] = c;
  workgroupBarrier();
  for (var m = WG / 2u; m > 0u; m /= 2u) {
    if (lid < m) { sums[lid] += sums[lid + m]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    ws[CHUNKS + 2u * wid.x] = sums[0].x;
    ws[CHUNKS + 2u * wid.x + 1u] = sums[0].y;
  }
}
