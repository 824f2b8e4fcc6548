// SparseAdam over f32 masters (METHOD.md): for each active entry j, g = grad + wd*W; m, v moments; bias-corrected step
// W -= lr * (m/bc1) / (sqrt(v/bc2) + eps), bc1 = 1 - beta1^t, bc2 = 1 - beta2^t. A nonzero guard[0] skips the update.

struct Params { n: u32, useGuard: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;            // [n]
@group(0) @binding(1) var<storage, read> guard: array<u32>;           // [1] nonzero = non-finite step, skip
@group(0) @binding(2) var<storage, read_write> master: array<f32>;    // [n]
@group(0) @binding(3) var<storage, read_write> m: array<f32>;         // [n]
@group(0) @binding(4) var<storage, read_write> v: array<f32>;         // [n]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn sparse_adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (p.useGuard != 0u && guard[0] != 0u) { return; }
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    let w = master[j];
    let g = grad[j] + p.wd * w;
    let mj = p.beta1 * m[j] + (1.0 - p.beta1) * g;
    let vj = p.beta2 * v[j] + (1.0 - p.beta2) * g * g;
    m[j] = mj;
    v[j] = vj;
    master[j] = w - p.lr * (mj / p.bc1) / (sqrt(vj / p.bc2) + p.eps);
  }
}
