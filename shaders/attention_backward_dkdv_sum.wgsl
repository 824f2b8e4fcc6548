// Attention backward, GQA combine: dk/dv of kv head g (assigned) = the per-query-head partials of attention_backward_dkdv
// summed over the group's query heads g*rep .. g*rep+rep-1 in head order (deterministic). One thread per output value.

struct Params { batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> pk: array<f32>;         // [T, NH, DQK]
@group(0) @binding(1) var<storage, read> pv: array<f32>;         // [T, NH, DV]
@group(0) @binding(2) var<storage, read_write> dk: array<f32>;   // [T, NKV, DQK]
@group(0) @binding(3) var<storage, read_write> dv: array<f32>;   // [T, NKV, DV]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;
override DQK: u32 = 128;
override DV: u32 = 128;

@compute @workgroup_size(WG)
fn backward_dkdv_sum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let e = (wid.y * nwg.x + wid.x) * WG + li;
  let W = DQK + DV;
  if (e >= p.batch * p.seq * p.n_kv_heads * W) { return; }
  let row = e / W;  // token * NKV + g
  let c = e % W;
  let rep = p.n_heads / p.n_kv_heads;
  let h0 = (row / p.n_kv_heads) * p.n_heads + (row % p.n_kv_heads) * rep;  // the group's first (token, head) row
  var s = 0.0;
  if (c < DQK) {
    for (var i = 0u; i < rep; i++) { s += pk[(h0 + i) * DQK + c]; }
    dk[row * DQK + c] = s;
  } else {
    for (var i = 0u; i < rep; i++) { s += pv[(h0 + i) * DV + c - DQK]; }
    dv[row * DV + c - DQK] = s;
  }
}
