// Flat elementwise maps over n f32 (one thread per element, 2-D grid for large n): add, add_in_place, scale(_in_place),
// fill, bf16_to_f32, clamp and its backward (the gradient passes where lo <= x <= hi, as torch.clamp's does).

struct Params { n: u32, in_off: u32, out_off: u32, _pad: u32, s0: f32, s1: f32 }

// Each entry point uses one binding set, by arity: inputs, outputs, then params.
@group(0) @binding(0) var<storage, read> a: array<f32>;             // [n]
@group(0) @binding(1) var<storage, read> b: array<f32>;             // [n]
@group(0) @binding(2) var<storage, read_write> ab_out: array<f32>;  // [n]
@group(0) @binding(3) var<uniform> p3: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;             // [n]
@group(0) @binding(0) var<storage, read> packed: array<u32>;        // bf16 pairs, element i at word i >> 1
@group(0) @binding(1) var<storage, read_write> y: array<f32>;       // [n]
@group(0) @binding(2) var<uniform> p2: Params;

@group(0) @binding(0) var<storage, read_write> buf: array<f32>;     // [n]
@group(0) @binding(1) var<uniform> p1: Params;

override WG: u32 = 256;
// #include decode

fn flat(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * WG + lid.x; }

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p3.n) { ab_out[i] = a[i] + b[i]; }
}

// a = x, b = dy, ab_out = dx; [s0, s1] = [lo, hi]
@compute @workgroup_size(WG)
fn clamp_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p3.n) { ab_out[i] = select(0.0, b[i], a[i] >= p3.s0 && a[i] <= p3.s1); }
}

@compute @workgroup_size(WG)
fn add_in_place(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p2.n) { y[i] += x[i]; }
}

// importance accumulation: y += |x|
@compute @workgroup_size(WG)
fn abs_add_in_place(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p2.n) { y[i] += abs(x[i]); }
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p2.n) { y[i] = p2.s0 * x[i]; }
}

@compute @workgroup_size(WG)
fn clamp_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p2.n) { y[i] = min(max(x[i], p2.s0), p2.s1); }
}

@compute @workgroup_size(WG)
fn bf16_to_f32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i >= p2.n) { return; }
  let e = p2.in_off + i;
  let word = packed[e >> 1u];
  y[p2.out_off + i] = bf16_value(word, (e & 1u) == 1u);
}

@compute @workgroup_size(WG)
fn scale_in_place(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p1.n) { buf[i] *= p1.s0; }
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i < p1.n) { buf[p1.out_off + i] = p1.s0; }
}
