// Sigmoid row gate (Qwen2-MoE shared expert): out[t, :] = sigmoid(s[t]) * y[t, :].
// Backward, one workgroup per row: dy[t, :] = sigmoid(s[t]) * dout[t, :], ds[t] = sigmoid' (s[t]) * sum_d dout[t, d] * y[t, d].

struct Params { rows: u32, cols: u32 }

@group(0) @binding(0) var<storage, read> s: array<f32>;             // [rows]
@group(0) @binding(1) var<storage, read> y: array<f32>;             // [rows, cols]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;     // [rows, cols]
@group(0) @binding(3) var<uniform> p: Params;

@group(0) @binding(2) var<storage, read> dout: array<f32>;          // [rows, cols]
@group(0) @binding(3) var<storage, read_write> ds: array<f32>;      // [rows]
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;      // [rows, cols]
@group(0) @binding(5) var<uniform> pb: Params;

override WG: u32 = 64;
var<workgroup> partial: array<f32, WG>;

fn sigmoid(v: f32) -> f32 {
  if (v >= 0.0) { return 1.0 / (1.0 + exp(-v)); }
  let e = exp(v);
  return e / (1.0 + e);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (i < p.rows * p.cols) { out[i] = sigmoid(s[i / p.cols]) * y[i]; }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pb.rows) { return; }   // uniform per workgroup
  let g = sigmoid(s[row]);
  let base = row * pb.cols;
  var acc = 0.0;
  for (var j = lid.x; j < pb.cols; j += WG) {
    acc += dout[base + j] * y[base + j];
    dy[base + j] = g * dout[base + j];
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k /= 2u) {
    if (lid.x < k) { partial[lid.x] += partial[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { ds[row] = g * (1.0 - g) * partial[0]; }
}
