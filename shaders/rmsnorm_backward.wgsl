// RMSNorm backward, one workgroup per row: dx = rstd * (w*dy - xhat * mean(xhat * w * dy)), xhat = x * rstd.
// The weight gradient (needed only when a norm trains) is a separate column-sum entry: dw[i] (+)= sum_rows dy*xhat.

struct Params { rows: u32, dim: u32, eps: f32, accumulate_dw: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(1) var<storage, read> w: array<f32>;           // [dim]
@group(0) @binding(2) var<storage, read> rstd: array<f32>;        // [rows]
@group(0) @binding(3) var<storage, read> dy: array<f32>;          // [rows, dim]
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;    // [rows, dim]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x;
  let lid = lid3.x;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  let r = rstd[row];
  var acc = 0.0;
  for (var i = lid; i < p.dim; i += WG) { acc += x[base + i] * r * w[i] * dy[base + i]; }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let m = partial[0] / f32(p.dim);
  for (var i = lid; i < p.dim; i += WG) {
    dx[base + i] = r * (w[i] * dy[base + i] - x[base + i] * r * m);
  }
}
