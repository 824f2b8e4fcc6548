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
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (e & 1u) == 1u));
  }
  return bitcast<f32>(w[e]);
}

fn f16_value(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  var v = f32(m) * 5.9604644775390625e-8;
  if (e != 0u) { v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u)); }
  return select(v, -v, (h & 0x8000u) != 0u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let g = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (g >= p.rows * p.groups_per_row) { return; }
  let row = g / p.groups_per_row;
  let k0 = (g % p.groups_per_row) * p.G;
  let start = row * p.K + k0;
  let len = min(p.G, p.K - k0);
  let packed = sz[p.row_offset * p.groups_per_row + g];
  let s = f16_value(packed & 0xffffu);
  let z = f16_value(packed >> 16u);
  let word0 = p.row_offset * (p.K / 8u) + start / 8u;
  var e = 0.0;
  for (var j = 0u; j < len; j++) {
    let c = f32((q[word0 + j / 8u] >> ((j % 8u) * 4u)) & 0xfu);
    let d = weight(start + j) - (c - z) * s;
    e += d * d;
  }
  err2[g] = e;
}
