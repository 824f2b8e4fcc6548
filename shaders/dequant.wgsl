// 4-bit dequantization (src/engine/quant/FORMAT.md), one thread per u32 of nibbles (8 weights of one group):
// out[r, k] = (code - z) * s with (s, z) of group k / G of row row_offset + r.

struct Params { rows: u32, K: u32, G: u32, groups_per_row: u32, row_offset: u32, out_offset: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> q: array<u32>;          // [row_offset + rows, K/8] nibbles
@group(0) @binding(1) var<storage, read> sz: array<u32>;         // [row_offset + rows, groups_per_row] f16 s | f16 z << 16
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // [rows, K] at out_offset
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 64;

// #include decode

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid.x;
  let words_per_row = p.K / 8u;
  if (t >= p.rows * words_per_row) { return; }
  let row = t / words_per_row;
  let k = (t % words_per_row) * 8u;
  let word = q[(p.row_offset + row) * words_per_row + k / 8u];
  let packed = sz[(p.row_offset + row) * p.groups_per_row + k / p.G];
  let s = q4_scale(packed);
  let z = q4_zero(packed);
  let o = p.out_offset + row * p.K + k;
  for (var j = 0u; j < 8u; j++) { out[o + j] = q4_weight((word >> (j * 4u)) & 0xfu, s, z); }
}
