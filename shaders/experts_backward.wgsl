// Routed experts backward 1/3, one workgroup per pair i = t*K+k (row s = slot[i]):
// dTopW[i] = dOut[t]·Y[s] and dY[s] = topW[i] * dOut[t]. Both assigned (=).

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> dOut: array<f32>;            // [T, H]
@group(0) @binding(1) var<storage, read> Y: array<f32>;               // [R, H]
@group(0) @binding(2) var<storage, read> slot: array<u32>;            // [T*K]
@group(0) @binding(3) var<storage, read> topW: array<f32>;            // [T, K]
@group(0) @binding(4) var<storage, read_write> dTopW: array<f32>;     // [T, K]
@group(0) @binding(5) var<storage, read_write> dY: array<f32>;        // [R, H]
@group(0) @binding(6) var<uniform> p: Params;

override WG: u32 = 64;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn backward_combine(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
  let H = p.H;
  for (var i = wid.x; i < p.T * p.K; i += nwg.x) {
    let t = i / p.K;
    let s = slot[i];
    let w = topW[i];
    var acc = 0.0;
    for (var h = lid; h < H; h += WG) {
      let d = dOut[t * H + h];
      dY[s * H + h] = w * d;
      acc += d * Y[s * H + h];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var m = WG / 2u; m > 0u; m = m / 2u) {
      if (lid < m) { partial[lid] += partial[lid + m]; }
      workgroupBarrier();
    }
    if (lid == 0u) { dTopW[i] = partial[0]; }
    workgroupBarrier();
  }
}
