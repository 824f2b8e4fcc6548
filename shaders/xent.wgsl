// Cross-entropy of a chunk of rows whose full-vocabulary logits [rows, vocab] sit in `work` (from matmul): one workgroup a
// row writes lse and loss and, when p.grad != 0, the row's shift into work[rows * vocab + r]: lse - log(scale), so that
// exp(logit - shift) = softmax · scale, which the dh GEMM computes from the logits as it loads them (ops/xent.ts;
// +inf where the target is ignored: no gradient; NaN where it is >= vocab); shaders/xent_onehot.wgsl subtracts the
// one-hot part.

struct Params { rows: u32, vocab: u32, row0: u32, grad: u32, scale: f32 }

const IGNORE = 0xffffffffu;
const LOWEST = -3.4028234e38;
var<private> nan_bits: u32 = 0x7fc00000u;   // a runtime (not constant) NaN for invalid targets
var<private> inf_bits: u32 = 0x7f800000u;   // and +inf for ignored ones

@group(0) @binding(0) var<storage, read> tgt: array<u32>;             // [T]; IGNORE = no loss; row r of the chunk is tgt[row0 + r]
@group(0) @binding(1) var<storage, read_write> work: array<f32>;      // [rows, vocab] logits, then (p.grad != 0) [rows] shifts
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;       // [T]
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;      // [T]: lse - target logit; 0 if ignored; NaN if tgt >= vocab
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;   // a power of two
var<workgroup> red: array<f32, WG>;

fn reduce(l: u32, v: f32, is_max: bool) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k /= 2u) {
    if (l < k) { red[l] = select(red[l] + red[l + k], max(red[l], red[l + k]), is_max); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= p.rows) { return; }   // uniform per workgroup
  let base = r * p.vocab;
  let row = p.row0 + r;
  let t = tgt[row];
  // the target logit
  var picked = 0.0;
  if (lid.x == 0u && t < p.vocab) { picked = work[base + t]; }
  // one pass: each thread's running (max, sum of exp) over its columns, then combined across the workgroup
  var m = LOWEST;
  var s = 0.0;
  for (var j = lid.x; j < p.vocab; j += WG) {
    let x = work[base + j];
    if (x > m) { s = s * exp(m - x); m = x; }
    s += exp(x - m);
  }
  let mr = reduce(lid.x, m, true);
  let l = mr + log(reduce(lid.x, s * exp(m - mr), false));
  if (lid.x == 0u) {
    lse[row] = l;
    if (t == IGNORE) { loss[row] = 0.0; }
    else if (t >= p.vocab) { loss[row] = bitcast<f32>(nan_bits); }
    else { loss[row] = l - picked; }
    if (p.grad != 0u) {
      var shift = l - log(p.scale);
      if (t == IGNORE) { shift = bitcast<f32>(inf_bits); }
      else if (t >= p.vocab) { shift = bitcast<f32>(nan_bits); }
      work[p.rows * p.vocab + r] = shift;
    }
  }
}
