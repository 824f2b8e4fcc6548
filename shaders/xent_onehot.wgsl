// The one-hot part of the LM head's dh: dh[row0 + r, :] -= scale * W[tgt, :] for each row of the chunk whose target is a
// word (< vocab); the softmax part came from the dh GEMM (shaders/xent.wgsl). Ignored rows get no gradient, rows with a
// target >= vocab are NaN already. One workgroup a row.

struct Params { rows: u32, hidden: u32, row0: u32, vocab: u32, w_off: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> tgt: array<u32>;         // [T]
@group(0) @binding(1) var<storage, read> w: array<u32>;           // W [V, H] at w_off: f32 bits, or two bf16 a word (W_BF16)
@group(0) @binding(2) var<storage, read_write> dh: array<f32>;    // [T, H]
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;
override W_BF16: bool = false;
// #include decode

@compute @workgroup_size(WG)
fn onehot(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= p.rows) { return; }
  let row = p.row0 + r;
  let t = tgt[row];
  if (t >= p.vocab) { return; }
  for (var j = lid.x; j < p.hidden; j += WG) {
    let e = p.w_off + t * p.hidden + j;
    var v: f32;
    if (W_BF16) { v = bf16_value(w[e >> 1u], (e & 1u) == 1u); } else { v = bitcast<f32>(w[e]); }
    dh[row * p.hidden + j] -= p.scale * v;
  }
}
