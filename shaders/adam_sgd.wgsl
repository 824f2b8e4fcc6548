// Router update (METHOD.md): SGD with momentum, no dampening, not Nesterov, L2 weight decay in the gradient:
// d = grad + wd*W; buf = hasBuf ? momentum*buf + d : d; W -= lr*buf. A nonzero guard[0] skips the update.

struct Params { n: u32, useGuard: u32, hasBuf: u32, _pad: u32, lr: f32, momentum: f32, wd: f32, _pad2: f32 }

@group(0) @binding(0) var<storage, read> grad: array<f32>;            // [n]
@group(0) @binding(1) var<storage, read> guard: array<u32>;           // [1]
@group(0) @binding(2) var<storage, read_write> w: array<f32>;         // [n]
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;       // [n] momentum buffer
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (p.useGuard != 0u && guard[0] != 0u) { return; }
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    let d = grad[j] + p.wd * w[j];
    var b = d;
    if (p.hasBuf != 0u) { b = p.momentum * buf[j] + d; }
    buf[j] = b;
    w[j] = w[j] - p.lr * b;
  }
}
