// Routed experts forward 3/3 (also the backward's dx gather): out[t, h] = sum_k w[t,k] * rows[slot(t,k), h],
// w = topW, or 1 when unweighted. Each token gathers its K rows in k order: deterministic, no atomics.

struct Params { T: u32, H: u32, K: u32, weighted: u32 }

@group(0) @binding(0) var<storage, read> rows: array<f32>;           // [R, H]
@group(0) @binding(1) var<storage, read> slot: array<u32>;           // [T*K]
@group(0) @binding(2) var<storage, read> topW: array<f32>;           // [T, K] (ignored unless weighted)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // [T, H]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var q = gid.x; q < p.T * p.H; q += nwg.x * WG) {
    let t = q / p.H;
    let h = q % p.H;
    var acc = 0.0;
    for (var k = 0u; k < p.K; k++) {
      var w = 1.0;
      if (p.weighted != 0u) { w = topW[t * p.K + k]; }
      acc += w * rows[slot[t * p.K + k] * p.H + h];
    }
    out[q] = acc;
  }
}
