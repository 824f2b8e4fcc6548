// Write the masters into the current weight tensor: W[off + idx[j]] = master[j], W f32 or bf16 (round to nearest even,
// two per u32; an even/odd neighbour pair sharing a word is written by the even entry's thread). Skipped if guard set.
// f32 only: just the entries with lo <= idx < hi, at off + idx - lo (a chunk of the tensor in a smaller buffer).

struct Params { n: u32, offset: u32, useGuard: u32, lo: u32, hi: u32, _a: u32, _b: u32, _c: u32 }   // [lo, hi): f32 only

@group(0) @binding(0) var<storage, read> idx: array<u32>;             // [n] sorted ascending, unique
@group(0) @binding(1) var<storage, read> master: array<f32>;          // [n]
@group(0) @binding(2) var<storage, read> guard: array<u32>;           // [1]
@group(0) @binding(3) var<storage, read_write> weights: array<u32>;   // f32 bits, or bf16 pairs
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;
override W_BF16: bool = false;

fn toBf16(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return (b >> 16u) | 0x40u; }   // NaN stays a quiet NaN
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(WG)
fn scatter(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (p.useGuard != 0u && guard[0] != 0u) { return; }
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    if (!W_BF16) {
      let g = idx[j];
      if (g >= p.lo && g < p.hi) { weights[p.offset + (g - p.lo)] = bitcast<u32>(master[j]); }
      continue;
    }
    let i = p.offset + idx[j];
    let word = weights[i >> 1u];
    if ((i & 1u) == 0u) {
      var hi = word >> 16u;
      if (j + 1u < p.n && p.offset + idx[j + 1u] == i + 1u) { hi = toBf16(master[j + 1u]); }
      weights[i >> 1u] = toBf16(master[j]) | (hi << 16u);
    } else if (j == 0u || p.offset + idx[j - 1u] != i - 1u) {
      weights[i >> 1u] = (word & 0xffffu) | (toBf16(master[j]) << 16u);
    }
  }
}
