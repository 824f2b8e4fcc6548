// 4-bit quantizer (src/engine/quant/FORMAT.md), one thread per group of G weights of a row (a row's last group may be shorter).
// The thread reads its group from memory once into `cache` (G <= MAX_G, checked by ops/quantize.ts), not once per iteration.
// Min-max start (s = range/15 as f16, z = -min/s), then up to `iters` HQQ steps on z; same steps and order as quant/hqq.ts.

struct Params {
  rows: u32, K: u32, G: u32, groups_per_row: u32,
  w_offset: u32, row_offset: u32, iters: u32, bf16: u32,
  lp_norm: f32, beta: f32, kappa: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;          // [rows, K] f32 bits, or bf16 pairs when p.bf16
@group(0) @binding(1) var<storage, read_write> q: array<u32>;    // [row_offset + rows, K/8] nibbles
@group(0) @binding(2) var<storage, read_write> sz: array<u32>;   // [row_offset + rows, groups_per_row] f16 s | f16 z << 16
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 64;
const MAX_G: u32 = 128u;

fn weight(i: u32) -> f32 {
  let e = p.w_offset + i;
  if (p.bf16 != 0u) {
    let word = w[e >> 1u];
    return bf16_value(word, (e & 1u) == 1u);
  }
  return bitcast<f32>(w[e]);
}

// f32 -> f16 bits, round to nearest even (overflow -> inf), done on the bits so every GPU rounds alike.
fn f16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x477ff000u) { return sign | 0x7c00u; }                                // >= 65520
  if (a < 0x38800000u) { return sign | u32(round(bitcast<f32>(a) * 16777216.0)); } // < 2^-14: subnormal
  let r = a - 0x38000000u;                                                        // rebias exponent 127 -> 15
  return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
}

// #include decode

fn code(v: vec4f, s: f32, z: f32) -> vec4f {
  return clamp(round(v / s + z), vec4f(0.0), vec4f(15.0));
}

// lp shrink; |e| <= dead (where |e|^(2-p) <= 1/beta) gives 0 without the power.
fn shrink(e: f32, beta: f32, dead: f32) -> f32 {
  let a = abs(e);
  if (a <= dead) { return 0.0; }
  return sign(e) * max(a - pow(a, p.lp_norm - 1.0) / beta, 0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let g = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (g >= p.rows * p.groups_per_row) { return; }
  let row = g / p.groups_per_row;
  let k0 = (g % p.groups_per_row) * p.G;
  let start = row * p.K + k0;
  let len = min(p.G, p.K - k0);

  // four weights a slot: a quarter of the private-array accesses (each costs more than the arithmetic on a CPU adapter);
  // the sums still add one weight at a time, in order
  var cache: array<vec4f, MAX_G / 4u>;
  var lo = weight(start);
  var hi = lo;
  let n4 = len / 4u;
  for (var j = 0u; j < n4; j++) {
    let v = vec4f(weight(start + 4u * j), weight(start + 4u * j + 1u), weight(start + 4u * j + 2u), weight(start + 4u * j + 3u));
    cache[j] = v;
    lo = min(lo, min(min(v.x, v.y), min(v.z, v.w)));
    hi = max(hi, max(max(v.x, v.y), max(v.z, v.w)));
  }
  let amax = max(abs(lo), abs(hi));
  let s_bits = f16_bits(max(max((hi - lo) / 15.0, amax / 1024.0), 5.9604644775390625e-8));
  let s = f16_value(s_bits);

  var z = -lo / s;
  var best_z = z;
  var best = 0.0;
  var beta = p.beta;
  for (var it = 0u; it < p.iters; it++) {
    let dead = pow(1.0 / beta, 1.0 / (2.0 - p.lp_norm));
    var err = 0.0;
    var acc = 0.0;
    for (var j = 0u; j < n4; j++) {
      let v = cache[j];
      let c = code(v, s, z);
      let r = v - (c - z) * s;
      let e2 = r * r;
      err += e2.x; err += e2.y; err += e2.z; err += e2.w;
      var e = vec4f(0.0);
      if (any(abs(r) > vec4f(dead))) { e = vec4f(shrink(r.x, beta, dead), shrink(r.y, beta, dead), shrink(r.z, beta, dead), shrink(r.w, beta, dead)); }
      let t = c - (v - e) / s;
      acc += t.x; acc += t.y; acc += t.z; acc += t.w;
    }
    if (it > 0u && !(err < best)) { break; }
    best = err;
    best_z = z;
    z = acc / f32(len);
    beta *= p.kappa;
  }

  let z_bits = f16_bits(best_z);
  let zf = f16_value(z_bits);
  sz[p.row_offset * p.groups_per_row + g] = s_bits | (z_bits << 16u);
  let word0 = p.row_offset * (p.K / 8u) + start / 8u;
  for (var i = 0u; i < len / 8u; i++) {
    let c0 = vec4u(code(cache[2u * i], s, zf));
    let c1 = vec4u(code(cache[2u * i + 1u], s, zf));
    q[word0 + i] = c0.x | (c0.y << 4u) | (c0.z << 8u) | (c0.w << 12u) | (c1.x << 16u) | (c1.y << 20u) | (c1.z << 24u) | (c1.w << 28u);
  }
}
