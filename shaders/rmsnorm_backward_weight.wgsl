// RMSNorm weight gradient: dw[i] = (dw[i] if accumulate) + sum over rows of dy[row,i] * x[row,i] * rstd[row]. One thread per column.

struct Params { rows: u32, dim: u32, eps: f32, accumulate_dw: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(1) var<storage, read> rstd: array<f32>;        // [rows]
@group(0) @binding(2) var<storage, read> dy: array<f32>;          // [rows, dim]
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;    // [dim]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn backward_weight(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= p.dim) { return; }
  var acc = 0.0;
  for (var row = 0u; row < p.rows; row++) { acc += dy[row * p.dim + i] * x[row * p.dim + i] * rstd[row]; }
  if (p.accumulate_dw != 0u) { dw[i] += acc; } else { dw[i] = acc; }
}
