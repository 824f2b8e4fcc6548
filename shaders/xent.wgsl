// Cross-entropy over a vocabulary processed in chunks (logits of one chunk at a time, from matmul): an online logsumexp per row.
// chunk_stats folds a chunk [rows, cols] into the running (max, sum) and picks the target logit; finalize writes lse and loss.

struct Params { rows: u32, cols: u32, col0: u32, vocab: u32, stats_off: u32, first: u32 }

const IGNORE = 0xffffffffu;
const LOWEST = -3.4028234e38;
var<private> nan_bits: u32 = 0x7fc00000u;   // a runtime (not constant) NaN for invalid targets

@group(0) @binding(0) var<storage, read> tgt: array<u32>;             // [rows]; IGNORE = no loss
@group(0) @binding(1) var<storage, read_write> work: array<f32>;      // logits chunk [rows, cols] at 0; (max, sum) [rows, 2] at stats_off
@group(0) @binding(2) var<storage, read_write> picked: array<f32>;    // [rows] the target logit (the loss buffer until finalize)
@group(0) @binding(3) var<uniform> p: Params;

@group(0) @binding(2) var<storage, read_write> lse: array<f32>;       // [rows]
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;      // [rows]: lse - target logit; 0 if ignored; NaN if tgt >= vocab
@group(0) @binding(4) var<uniform> pf: Params;

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

// One workgroup per row.
@compute @workgroup_size(WG)
fn chunk_stats(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.rows) { return; }   // uniform per workgroup
  let base = row * p.cols;
  var m = LOWEST;
  for (var j = lid.x; j < p.cols; j += WG) { m = max(m, work[base + j]); }
  let mc = reduce(lid.x, m, true);
  var s = 0.0;
  for (var j = lid.x; j < p.cols; j += WG) { s += exp(work[base + j] - mc); }
  let sc = reduce(lid.x, s, false);
  if (lid.x != 0u) { return; }
  let so = p.stats_off + 2u * row;
  if (p.first != 0u) {
    work[so] = mc;
    work[so + 1u] = sc;
  } else {
    let mo = work[so];
    let mn = max(mo, mc);
    work[so] = mn;
    work[so + 1u] = work[so + 1u] * exp(mo - mn) + sc * exp(mc - mn);
  }
  let t = tgt[row];
  if (t >= p.col0 && t < p.col0 + p.cols) { picked[row] = work[base + t - p.col0]; }
}

// One thread per row.
@compute @workgroup_size(WG)
fn finalize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (row >= pf.rows) { return; }
  let so = pf.stats_off + 2u * row;
  let l = work[so] + log(work[so + 1u]);
  lse[row] = l;
  let t = tgt[row];
  if (t == IGNORE) { loss[row] = 0.0; }
  else if (t >= pf.vocab) { loss[row] = bitcast<f32>(nan_bits); }
  else { loss[row] = l - loss[row]; }
}
