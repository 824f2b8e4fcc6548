// Whole-buffer reductions without a CPU round trip: sum of squares (two passes through `partials`, deterministic) and a count
// of non-finite values (inf/NaN, tested on the bits), one atomic add per workgroup into a zeroed u32.

struct Params { n: u32, out_off: u32, accumulate: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;                 // [n]
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;    // [num_workgroups] (pass 1 out)
@group(0) @binding(2) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> parts: array<f32>;             // [n] (pass 2 in)
@group(0) @binding(1) var<storage, read_write> total: array<f32>;       // total[out_off] (+)= sum parts
@group(0) @binding(2) var<uniform> p2: Params;

@group(0) @binding(0) var<storage, read> xbits: array<u32>;             // [n] f32 bits
@group(0) @binding(1) var<storage, read_write> count: array<atomic<u32>>;   // count[out_off] += #non-finite
@group(0) @binding(2) var<uniform> p3: Params;

override WG: u32 = 256;   // a power of two
var<workgroup> fpart: array<f32, WG>;
var<workgroup> upart: array<u32, WG>;

fn reduce_f32(l: u32, v: f32) -> f32 {
  fpart[l] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k /= 2u) {
    if (l < k) { fpart[l] += fpart[l + k]; }
    workgroupBarrier();
  }
  return fpart[0];
}

// Grid-stride: workgroup w sums x[i]^2 over its strided share and writes partials[w].
@compute @workgroup_size(WG)
fn sum_squares_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var acc = 0.0;
  for (var i = wid.x * WG + lid.x; i < p.n; i += nwg.x * WG) { acc += x[i] * x[i]; }
  let r = reduce_f32(lid.x, acc);
  if (lid.x == 0u) { partials[wid.x] = r; }
}

// One workgroup.
@compute @workgroup_size(WG)
fn sum_partials(@builtin(local_invocation_id) lid: vec3u) {
  var acc = 0.0;
  for (var i = lid.x; i < p2.n; i += WG) { acc += parts[i]; }
  let r = reduce_f32(lid.x, acc);
  if (lid.x == 0u) {
    if (p2.accumulate != 0u) { total[p2.out_off] += r; } else { total[p2.out_off] = r; }
  }
}

@compute @workgroup_size(WG)
fn nonfinite_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var c = 0u;
  for (var i = wid.x * WG + lid.x; i < p3.n; i += nwg.x * WG) {
    c += select(0u, 1u, (xbits[i] & 0x7f800000u) == 0x7f800000u);
  }
  upart[lid.x] = c;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k /= 2u) {
    if (lid.x < k) { upart[lid.x] += upart[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u && upart[0] != 0u) { atomicAdd(&count[p3.out_off], upart[0]); }
}
