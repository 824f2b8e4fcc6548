// Squared reconstruction error of each 4-bit group against the weights it came from, one thread per group:
// err2[g] = sum over the group of (W - (code - z) * s)^2. Same Params and weight input as quantize.wgsl.

struct Params {
  rows: u32, K: u32, G: u32, groups_per_row: u32,
  w_offset: u32, row_offset: u32, iters: u32, bf16: u32,
  lp_norm: f32, beta: f32, kappa: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;          // [rows, K] f32 bits, or bf16 pairs when p.bf16
@group(0) @binding(1) var<storage, read> q: array<u32>;          // [row_offset + rows, K/8] nibbles
@group(0) @binding(2) var<storage, read> sz: array<u32>;         // [row_offset + rows, groups_per_row] f16 s | f16 z << 16
@group(0) @binding(3) var<storage, read_write> err2: array<f32>; // [rows * groups_per_row]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;

fn weight(i: u32) -> f32 {
  let e = p.w_offset + i;
  if (p.bf16 != 0u) {
    let word = w[e >> 1u];
    return bf16_value(word, (e & 1u) == 1u);
  }
  return bitcast<f32>(w[e]);
}

// #include decode

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let g = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (g >= p.rows * p.groups_per_row) { return; }
  let row = g / p.groups_per_row;
  let k0 = (g % p.groups_per_row) * p.G;
  let start = row * p.K + k0;
  let len = min(p.G, p.K - k0);
  let packed = sz[p.row_offset * p.groups_per_row + g];
  let s = q4_scale(packed);
  let z = q4_zero(packed);
  let word0 = p.row_offset * (p.K / 8u) + start / 8u;
  var e = 0.0;
  for (var j = 0u; j < len; j++) {
    let d = weight(start + j) - q4_weight((q[word0 + j / 8u] >> ((j % 8u) * 4u)) & 0xfu, s, z);
    e += d * d;
  }
  err2[g] = e;
}
