// Top-k compaction 2/2: write, in ascending index order, every i with key > threshold and the first `ties` with
// key == threshold: position = (# above before i) + min(# equal before i, ties). Chunks in order; inside a chunk, tiles
// of WG·V elements, thread t owning the V contiguous elements at t·V: one workgroup scan per tile (not per WG elements).

struct Params { n: u32, k: u32, shift: u32, bits: u32, round: u32, nChunks: u32, chunkSize: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;                  // [n]
@group(0) @binding(1) var<storage, read> ws: array<u32>;                 // [2048] threshold, [2049] ties, chunk counts
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;      // [k] ascending
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;
const V = 16u;
const STATE = 2048u;
const CHUNKS = 2056u;
var<workgroup> sums: array<vec2u, WG>;

/** (key > tau, key == tau) of x[i], i < end. */
fn flags(i: u32, end: u32, tau: u32) -> vec2u {
  if (i >= end) { return vec2u(0u); }
  let key = bitcast<u32>(x[i]) & 0x7fffffffu;
  return vec2u(select(0u, 1u, key > tau), select(0u, 1u, key == tau));
}

@compute @workgroup_size(WG)
fn compact(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let tau = ws[STATE];
  let ties = ws[STATE + 1u];
  // (above, equal) counts of all earlier chunks
  var b = vec2u(0u);
  for (var c = lid; c < wid.x; c += WG) { b += vec2u(ws[CHUNKS + 2u * c], ws[CHUNKS + 2u * c + 1u]); }
  sums[lid] = b;
  workgroupBarrier();
  for (var m = WG / 2u; m > 0u; m /= 2u) {
    if (lid < m) { sums[lid] += sums[lid + m]; }
    workgroupBarrier();
  }
  var run = sums[0];
  workgroupBarrier();
  let start = wid.x * p.chunkSize;
  let end = min(start + p.chunkSize, p.n);
  for (var s = start; s < end; s += WG * V) {
    let i0 = s + lid * V;
    var own = vec2u(0u);
    for (var v = 0u; v < V; v++) { own += flags(i0 + v, end, tau); }
    sums[lid] = own;
    workgroupBarrier();
    for (var off = 1u; off < WG; off *= 2u) {
      var add = vec2u(0u);
      if (lid >= off) { add = sums[lid - off]; }
      workgroupBarrier();
      sums[lid] += add;
      workgroupBarrier();
    }
    var before = run + sums[lid] - own;
    let total = sums[WG - 1u];
    if (own.x + own.y != 0u) {
      for (var v = 0u; v < V; v++) {
        let f = flags(i0 + v, end, tau);
        if (f.x == 1u) { indices[before.x + min(before.y, ties)] = i0 + v; }
        if (f.y == 1u && before.y < ties) { indices[before.x + before.y] = i0 + v; }
        before += f;
      }
    }
    run += total;
    workgroupBarrier();
  }
}
