// 4-bit dequantization at listed elements (src/engine/quant/FORMAT.md), one thread per listed element:
// out[j] = (code - z) * s of element idx[j] = row * K + k of a [rows, K] matrix, (s, z) of group k / G of that row.

struct Params { n: u32, K: u32, G: u32, groups_per_row: u32 }

@group(0) @binding(0) var<storage, read> q: array<u32>;          // [rows, K/8] nibbles
@group(0) @binding(1) var<storage, read> sz: array<u32>;         // [rows, groups_per_row] f16 s | f16 z << 16
@group(0) @binding(2) var<storage, read> idx: array<u32>;        // [n] element indices
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [n]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;

// #include decode

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (t >= p.n) { return; }
  let i = idx[t];
  let row = i / p.K;
  let k = i % p.K;
  let word = q[row * (p.K / 8u) + k / 8u];
  let packed = sz[row * p.groups_per_row + k / p.G];
  out[t] = q4_weight((word >> ((k % 8u) * 4u)) & 0xfu, q4_scale(packed), q4_zero(packed));
}
