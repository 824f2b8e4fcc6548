// 4-bit routed experts, sparse correction (ops/experts_q4.ts): Δ[j] = current value − dequantized W0 at table entry j,
// the current value being an active entry's master or a dropped entry's overlay value. Once per step and tensor; the
// correction kernels (experts_q4_*.wgsl) read Δ instead of the weights.

struct Params { nnz: u32, srcOff: u32, flatOff: u32, L: u32, szOff: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // src [nnz] at srcOff (slot | OVERLAY), flat [nnz] at flatOff
@group(0) @binding(1) var<storage, read> master: array<f32>;    // [k] active values
@group(0) @binding(2) var<storage, read> overlay: array<f32>;   // [n] dropped entries' values
@group(0) @binding(3) var<storage, read> wq: array<u32>;        // 4-bit W0: codes from word 0, (scale, zero) words from szOff
@group(0) @binding(4) var<storage, read_write> delta: array<f32>; // [nnz]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256u;
override QG: u32 = 128u;   // 4-bit group size
const OVERLAY = 0x80000000u;

// #include decode

@compute @workgroup_size(WG)
fn delta_entries(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let j = gid.x + gid.y * nw.x * WG;
  if (j >= p.nnz) { return; }
  let s = tab[p.srcOff + j];
  let f = tab[p.flatOff + j];
  let w0 = q4_weight((wq[f >> 3u] >> ((f & 7u) * 4u)) & 0xfu, q4_scale(wq[q4_sz_word(f, p.L, QG, p.szOff)]), q4_zero(wq[q4_sz_word(f, p.L, QG, p.szOff)]));
  var v: f32;
  if ((s & OVERLAY) != 0u) { v = overlay[s & ~OVERLAY]; } else { v = master[s]; }
  delta[j] = v - w0;
}
