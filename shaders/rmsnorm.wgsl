// RMSNorm over the last dimension, one workgroup per row.
// forward: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps).  backward: dx = rstd * (w*dy - xhat * mean(xhat*w*dy)), dw += sum_rows dy*xhat.

struct Params { rows: u32, dim: u32, eps: f32, accumulate_dw: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(1) var<storage, read> w: array<f32>;           // [dim]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;     // [rows, dim]
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;  // [rows]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;
var<workgroup> partial: array<f32, WG>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let r = partial[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x;
  let lid = lid3.x;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += WG) { let v = x[base + i]; ss += v * v; }
  let r = inverseSqrt(reduce_sum(lid, ss) / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += WG) { y[base + i] = x[base + i] * r * w[i]; }
  if (lid == 0u) { rstd[row] = r; }
}
