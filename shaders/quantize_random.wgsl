// Random 4-bit weights made on the GPU (benchmarks of big shapes: nothing to download, nothing built on the CPU).
// Thread i < q_words writes code word i (8 uniform codes), thread q_words + g writes group g's (scale, zero):
// s uniform in [2^-9, 2^-8) and z in [7, 8) as f16 bits, so Ŵ = (q - z)·s spans about ±0.03 (std ≈ 0.013).

struct Params { q_words: u32, groups: u32, seed: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read_write> q: array<u32>;    // [q_words] code words
@group(0) @binding(1) var<storage, read_write> sz: array<u32>;   // [groups] f16 s | f16 z << 16
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 64;

// PCG-style integer hash (one LCG step, then a permutation of its bits).
fn hash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (i >= p.q_words + p.groups) { return; }
  let h = hash(i ^ hash(p.seed));
  if (i < p.q_words) {
    q[i] = h;
  } else {
    sz[i - p.q_words] = (0x1800u | (h & 0x3ffu)) | ((0x4700u | ((h >> 10u) & 0xffu)) << 16u);
  }
}
