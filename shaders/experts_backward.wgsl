// Routed experts backward 1/3, pair i = t*K+k (row s = slot[i]): dTopW[i] = dOut[t]·Y[s] and dY[s] = topW[i] * dOut[t],
// both assigned (=). A workgroup takes WG/TPP pairs at a time, TPP threads per pair, one barrier per round.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> dOut: array<f32>;            // [T, H]
@group(0) @binding(1) var<storage, read> Y: array<f32>;               // [R, H]
@group(0) @binding(2) var<storage, read> slot: array<u32>;            // [T*K]
@group(0) @binding(3) var<storage, read> topW: array<f32>;            // [T, K]
@group(0) @binding(4) var<storage, read_write> dTopW: array<f32>;     // [T, K]
@group(0) @binding(5) var<storage, read_write> dY: array<f32>;        // [R, H]
@group(0) @binding(6) var<uniform> p: Params;

override WG: u32 = 64;
override TPP: u32 = 8;   // threads per pair (divides WG)
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn backward_combine(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
  let lane = lid % TPP;
  let H = p.H;
  let n = p.T * p.K;
  for (var i0 = wid.x * (WG / TPP); i0 < n; i0 += nwg.x * (WG / TPP)) {
    let i = i0 + lid / TPP;
    var acc = 0.0;
    if (i < n) {
      let t = i / p.K;
      let s = slot[i];
      let w = topW[i];
      for (var h = lane; h < H; h += TPP) {
        let d = dOut[t * H + h];
        dY[s * H + h] = w * d;
        acc += d * Y[s * H + h];
      }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && i < n) {
      var sum = 0.0;
      for (var j = 0u; j < TPP; j++) { sum += partial[lid + j]; }
      dTopW[i] = sum;
    }
    workgroupBarrier();
  }
}
