// Bias gradient of the linear layer: dbias[j] (+)= sum_i dy[i, j], one thread per column (reads coalesce across threads).
// Separate from matmul.wgsl because its bindings differ; it is cheap next to the two backward matmuls.

struct Params { m: u32, n: u32, dy_off: u32, dbias_off: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> dy: array<f32>;            // [m, n] at dy_off
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;   // [n] at dbias_off
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.n) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.m; i++) { s += dy[p.dy_off + i * p.n + j]; }
  let o = p.dbias_off + j;
  if (p.accumulate != 0u) { dbias[o] += s; } else { dbias[o] = s; }
}
