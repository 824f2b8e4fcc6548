// SparseAdam with a step count per entry (TrainSettings.perEntryStep): as adam.wgsl's sparse_adam, but entry j's count
// steps[j] is incremented first and its bias corrections come from a host table bc[2t] = 1 - beta1^t, bc[2t+1] = 1 - beta2^t.

struct Params { n: u32, useGuard: u32, tMax: u32, _pad: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;            // [n]
@group(0) @binding(1) var<storage, read> guard: array<u32>;           // [1] nonzero = non-finite step, skip
@group(0) @binding(2) var<storage, read> bc: array<f32>;              // [2 * (tMax + 1)] bias corrections by t
@group(0) @binding(3) var<storage, read_write> master: array<f32>;    // [n]
@group(0) @binding(4) var<storage, read_write> m: array<f32>;         // [n]
@group(0) @binding(5) var<storage, read_write> v: array<f32>;         // [n]
@group(0) @binding(6) var<storage, read_write> steps: array<u32>;     // [n] updates entry j has had
@group(0) @binding(7) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn sparse_adam_entry_t(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (p.useGuard != 0u && guard[0] != 0u) { return; }
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    let t = steps[j] + 1u;
    steps[j] = t;
    let tc = min(t, p.tMax);
    let w = master[j];
    let g = grad[j] + p.wd * w;
    let mj = p.beta1 * m[j] + (1.0 - p.beta1) * g;
    let vj = p.beta2 * v[j] + (1.0 - p.beta2) * g * g;
    m[j] = mj;
    v[j] = vj;
    master[j] = w - p.lr * (mj / bc[2u * tc]) / (sqrt(vj / bc[2u * tc + 1u]) + p.eps);
  }
}
