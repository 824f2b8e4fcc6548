// Non-finite guard: flag[0] |= 1 if any of x[0..n) is NaN or +-inf (the caller clears flag once per step, checks all
// gradients and the loss into it, and the optimizer kernels skip when it is set). Atomics only on the failing path.

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;               // [n]
@group(0) @binding(1) var<storage, read_write> flag: array<atomic<u32>>;  // [1]
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn check_finite(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  var bad = false;
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    bad = bad || (bitcast<u32>(x[j]) & 0x7f800000u) == 0x7f800000u;
  }
  if (bad) { atomicOr(&flag[0], 1u); }
}
