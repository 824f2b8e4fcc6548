// Expert weight gradient at a sorted list of active flat indices only (the dense gradient is never built):
// entry (part, e, r, c) -> grad = sum over the rows s of expert e of left_part[s, r] * right[src(s), c].

// G space: [gate: E*IE*H][up: E*IE*H], part 0 uses left0 = dG, part 1 left1 = dU, right = x gathered (src = token).
// D space: [down: E*H*IE], left0 = dY, right = A (src = s).
struct Params { n: u32, M: u32, N: u32, partSize: u32, K: u32, gather: u32, accumulate: u32, E: u32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;             // [n] sorted flat indices
@group(0) @binding(1) var<storage, read> left0: array<f32>;           // [R, M]
@group(0) @binding(2) var<storage, read> left1: array<f32>;           // [R, M] (second part; may be left0)
@group(0) @binding(3) var<storage, read> right: array<f32>;           // [T, N] (gather) or [R, N]
@group(0) @binding(4) var<storage, read> rowPair: array<u32>;         // [R]
@group(0) @binding(5) var<storage, read> offsets: array<u32>;         // [E+1]
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;      // [n]
@group(0) @binding(7) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn sparse_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let M = p.M;
  let N = p.N;
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    var f = idx[j];
    let part = f >= p.partSize;
    if (part) { f -= p.partSize; }
    let e = f / (M * N);
    let r = (f / N) % M;
    let c = f % N;
    var acc = 0.0;
    for (var s = offsets[e]; s < offsets[e + 1u]; s++) {
      var src = s;
      if (p.gather != 0u) { src = rowPair[s] / p.K; }
      var l = 0.0;
      if (part) { l = left1[s * M + r]; } else { l = left0[s * M + r]; }
      acc += l * right[src * N + c];
    }
    if (p.accumulate != 0u) { grad[j] += acc; } else { grad[j] = acc; }
  }
}
