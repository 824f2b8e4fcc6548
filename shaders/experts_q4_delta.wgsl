// 4-bit routed experts, sparse correction (ops/experts_q4.ts): Δ[j] = current value − dequantized W0 at table entry j,
// the current value being an active entry's master or a dropped entry's overlay value. Once per step and tensor (and
// again in backward for all but the top layer: one Δ buffer per index space); the grouped GEMMs (experts*.wgsl) add it
// to the 4-bit weights they stage.

struct Params { rows: u32, ptr: u32, act: u32, col: u32, L: u32, szOff: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // rowptr [rows + 1] at ptr, active entries before each row [rows + 1] at act, cols (low 16 bits) at col
@group(0) @binding(1) var<storage, read> master: array<f32>;    // [k] active values
@group(0) @binding(2) var<storage, read> overlay: array<f32>;   // [n] dropped entries' values
@group(0) @binding(3) var<storage, read> wq: array<u32>;        // 4-bit W0: codes from word 0, (scale, zero) words from szOff
@group(0) @binding(4) var<storage, read_write> delta: array<f32>; // [nnz]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256u;
override QG: u32 = 128u;   // 4-bit group size
const OVERLAY = 0x8000u;

// #include decode

// Thread = one forward row r: its entries in order, each taking the next master slot (active) or overlay slot.
@compute @workgroup_size(WG)
fn delta_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let r = gid.x + gid.y * nw.x * WG;
  if (r >= p.rows) { return; }
  let j0 = tab[p.ptr + r];
  let j1 = tab[p.ptr + r + 1u];
  var a = tab[p.act + r];
  var o = j0 - a;
  for (var j = j0; j < j1; j++) {
    let c = tab[p.col + j];
    let f = r * p.L + (c & 0x7fffu);
    let sz = wq[q4_sz_word(f, p.L, QG, p.szOff)];
    let w0 = q4_weight((wq[f >> 3u] >> ((f & 7u) * 4u)) & 0xfu, q4_scale(sz), q4_zero(sz));
    var v: f32;
    if ((c & OVERLAY) != 0u) { v = overlay[o]; o++; } else { v = master[a]; a++; }
    delta[j] = v - w0;
  }
}
