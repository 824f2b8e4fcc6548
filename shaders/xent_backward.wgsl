// Cross-entropy backward for one vocabulary chunk, in place: logits [rows, cols] -> dlogits = (softmax - onehot(tgt)) * scale.
// softmax = exp(logit - lse[row]); ignored rows get 0, rows whose target is >= vocab get NaN. dh then follows by matmul.

struct Params { rows: u32, cols: u32, col0: u32, vocab: u32, scale: f32 }

const IGNORE = 0xffffffffu;
var<private> nan_bits: u32 = 0x7fc00000u;

@group(0) @binding(0) var<storage, read> tgt: array<u32>;           // [rows]
@group(0) @binding(1) var<storage, read> lse: array<f32>;           // [rows]
@group(0) @binding(2) var<storage, read_write> work: array<f32>;    // [rows, cols]: logits in, dlogits out
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn chunk_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (i >= p.rows * p.cols) { return; }
  let row = i / p.cols;
  let t = tgt[row];
  if (t == IGNORE) { work[i] = 0.0; return; }
  if (t >= p.vocab) { work[i] = bitcast<f32>(nan_bits); return; }
  let v = p.col0 + (i - row * p.cols);
  work[i] = (exp(work[i] - lse[row]) - select(0.0, 1.0, v == t)) * p.scale;
}
