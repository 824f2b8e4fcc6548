// Dense SwiGLU gating, flat over n = rows * inter: h = silu(g) * u, silu(g) = g * sigmoid(g).
// Backward (activation gradients, assigned): dg = dh * u * s * (1 + g * (1 - s)), du = dh * g * s, with s = sigmoid(g).

struct Params { n: u32 }

@group(0) @binding(0) var<storage, read> g: array<f32>;             // [rows, inter]
@group(0) @binding(1) var<storage, read> u: array<f32>;             // [rows, inter]
@group(0) @binding(2) var<storage, read_write> h: array<f32>;       // [rows, inter]
@group(0) @binding(3) var<uniform> p: Params;

@group(0) @binding(2) var<storage, read> dh: array<f32>;            // [rows, inter]
@group(0) @binding(3) var<storage, read_write> dg: array<f32>;      // [rows, inter]
@group(0) @binding(4) var<storage, read_write> du: array<f32>;      // [rows, inter]
@group(0) @binding(5) var<uniform> pb: Params;

override WG: u32 = 256;

fn sigmoid(v: f32) -> f32 {
  if (v >= 0.0) { return 1.0 / (1.0 + exp(-v)); }
  let e = exp(v);
  return e / (1.0 + e);
}

fn flat(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * WG + lid.x; }

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p.n) { h[i] = g[i] * sigmoid(g[i]) * u[i]; }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i >= pb.n) { return; }
  let gi = g[i];
  let s = sigmoid(gi);
  dg[i] = dh[i] * u[i] * s * (1.0 + gi * (1.0 - s));
  du[i] = dh[i] * gi * s;
}
