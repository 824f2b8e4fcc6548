// Attention backward preamble: delta_i = dO_i . o_i per (token, head) row, the softmax-Jacobian term both gradient passes need.
// One thread per row.

struct Params { batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> dout: array<f32>;         // [T, NH, DV]
@group(0) @binding(1) var<storage, read> o: array<f32>;            // [T, NH, DV]
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;  // [T, NH]
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 64;
override DV: u32 = 128;

@compute @workgroup_size(WG)
fn backward_delta(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.x;
  if (row >= p.batch * p.seq * p.n_heads) { return; }
  var acc = 0.0;
  for (var d = 0u; d < DV; d++) { acc += dout[row * DV + d] * o[row * DV + d]; }
  delta[row] = acc;
}
