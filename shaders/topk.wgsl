// Top-k by |x|, radix select pass: histogram of one digit of key = bits(|x|) (monotone for non-negative floats) over the
// elements whose higher digits equal the prefix found so far. Per-workgroup histogram, merged once per nonzero bin.

struct Params { n: u32, k: u32, shift: u32, bits: u32, round: u32, nChunks: u32, chunkSize: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;                  // [n]
@group(0) @binding(1) var<storage, read_write> ws: array<atomic<u32>>;   // workspace: [0, 2048) histogram, 2048.. state
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256;
const BINS = 2048u;
const STATE = 2048u;   // (prefix, remaining k)
var<workgroup> local: array<atomic<u32>, BINS>;

@compute @workgroup_size(WG)
fn histogram(@builtin(global_invocation_id) gid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
  for (var b = lid; b < BINS; b += WG) { atomicStore(&local[b], 0u); }
  workgroupBarrier();
  let high = p.shift + p.bits;   // digits above this one must match the prefix
  let prefix = atomicLoad(&ws[STATE]);
  let mask = (1u << p.bits) - 1u;
  for (var i = gid.x; i < p.n; i += nwg.x * WG) {
    let key = bitcast<u32>(x[i]) & 0x7fffffffu;
    if (high >= 32u || (key >> high) == (prefix >> high)) { atomicAdd(&local[(key >> p.shift) & mask], 1u); }
  }
  workgroupBarrier();
  for (var b = lid; b <= mask; b += WG) {
    let c = atomicLoad(&local[b]);
    if (c != 0u) { atomicAdd(&ws[b], c); }
  }
}
