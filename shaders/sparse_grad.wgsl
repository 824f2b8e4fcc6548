// Expert weight gradient at a sorted list of active flat indices only (the dense gradient is never built):
// entry (part, e, r, c) -> grad = sum over the rows s of expert e of left_part[s, r] * right[src(s), c].

// G space: [gate: E*IE*H][up: E*IE*H], part 0 uses left0 = dG, part 1 left1 = dU, right = x gathered (src = token).
// D space: [down: E*H*IE], left0 = dY, right = A (src = s).
// A workgroup takes WG consecutive entries; when they all lie in one expert (the usual case: indices are sorted), the
// rows' sources are staged WG at a time in workgroup memory and shared by all of them.
struct Params { n: u32, M: u32, N: u32, partSize: u32, K: u32, gather: u32, accumulate: u32, E: u32 }

@group(0) @binding(0) var<storage, read> idx: array<u32>;             // [n] sorted flat indices
@group(0) @binding(1) var<storage, read> left0: array<f32>;           // [R, M]
@group(0) @binding(2) var<storage, read> left1: array<f32>;           // [R, M] (second part; may be left0)
@group(0) @binding(3) var<storage, read> right: array<f32>;           // [T, N] (gather) or [R, N]
@group(0) @binding(4) var<storage, read> rowPair: array<u32>;         // [R]
@group(0) @binding(5) var<storage, read> offsets: array<u32>;         // [E+1]
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;      // [n]
@group(0) @binding(7) var<uniform> p: Params;

override WG: u32 = 64;
var<workgroup> srcs: array<u32, WG>;   // right row of each staged expert row

fn srcOf(s: u32) -> u32 { if (p.gather != 0u) { return rowPair[s] / p.K; } return s; }
fn leftAt(part: bool, i: u32) -> f32 { if (part) { return left1[i]; } return left0[i]; }

fn store(j: u32, acc: f32) {
  if (p.accumulate != 0u) { grad[j] += acc; } else { grad[j] = acc; }
}

@compute @workgroup_size(WG)
fn sparse_grad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let M = p.M;
  let N = p.N;
  for (var j0 = wid.x * WG; j0 < p.n; j0 += nwg.x * WG) {
    let j = j0 + lid3.x;
    let live = j < p.n;
    var f = idx[min(j, p.n - 1u)];
    let part = f >= p.partSize;
    if (part) { f -= p.partSize; }
    let e = f / (M * N);
    let r = (f / N) % M;
    let c = f % N;
    var acc = 0.0;
    // Uniform: the first and last entry of this group (sorted) lie in the same part and expert, so all of them do.
    let block = idx[j0] / (M * N);   // part * E + expert
    if (block == idx[min(j0 + WG, p.n) - 1u] / (M * N)) {
      let sEnd = offsets[block % p.E + 1u];
      for (var s0 = offsets[block % p.E]; s0 < sEnd; s0 += WG) {
        if (s0 + lid3.x < sEnd) { srcs[lid3.x] = srcOf(s0 + lid3.x); }
        workgroupBarrier();
        let cnt = min(WG, sEnd - s0);
        for (var i = 0u; i < cnt; i++) { acc += leftAt(part, (s0 + i) * M + r) * right[srcs[i] * N + c]; }
        workgroupBarrier();
      }
    } else {
      for (var s = offsets[e]; s < offsets[e + 1u]; s++) { acc += leftAt(part, s * M + r) * right[srcOf(s) * N + c]; }
    }
    if (live) { store(j, acc); }
  }
}
