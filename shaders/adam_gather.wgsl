// Read the masters out of the current weight tensor (at (re)selection): master[j] = W[off + idx[j]], W f32 or bf16.
// f32 only: just the entries with lo <= idx < hi, from W[off + idx - lo] (a chunk of the tensor); the others untouched.

struct Params { n: u32, offset: u32, useGuard: u32, lo: u32, hi: u32, _a: u32, _b: u32, _c: u32 }   // [lo, hi): f32 only

@group(0) @binding(0) var<storage, read> weights: array<u32>;         // f32 bits, or bf16 pairs
@group(0) @binding(1) var<storage, read> idx: array<u32>;             // [n]
@group(0) @binding(2) var<storage, read_write> master: array<f32>;    // [n]
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;
override W_BF16: bool = false;
// #include decode

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    if (!W_BF16) {
      let g = idx[j];
      if (g >= p.lo && g < p.hi) { master[j] = bitcast<f32>(weights[p.offset + (g - p.lo)]); }
      continue;
    }
    let i = p.offset + idx[j];
    let w = weights[i >> 1u];
    master[j] = bf16_value(w, (i & 1u) == 1u);
  }
}
