// Routed experts backward 3/3, grouped GEMM over expert-sorted rows: dXr = dG·gate_e + dU·up_e [R, H] (=), which
// experts_combine then gathers per token into dx. Workgroup = one row tile (TM rows, one expert) x TN columns of H;
// thread = 8 rows x 8 columns (two runs of 4). With a sparse table (p.sNnz > 0, ops/experts_q4.ts; transposed: entries
// by column of H, i ascending) each staged gate/up slice gets Δ of the entries whose i falls in it: dXr on W0 + Δ.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32, gateSz: u32, upSz: u32, downSz: u32, e0: u32, e1: u32, sPtr: u32, sCol: u32, sPos: u32, sNnz: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> dG: array<f32>;             // [R, IE]
@group(0) @binding(1) var<storage, read> dU: array<f32>;             // [R, IE]
@group(0) @binding(2) var<storage, read> wGate: array<u32>;          // [E, IE, H] from gateOff: f32 bits, bf16 pairs or 4-bit
@group(0) @binding(3) var<storage, read> wUp: array<u32>;            // [E, IE, H] from upOff
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> dXr: array<f32>;      // [R, H]
@group(0) @binding(6) var<storage, read> sp: array<u32>;         // sparse table (G index space), any buffer when p.sNnz == 0
@group(0) @binding(7) var<storage, read> delta: array<f32>;      // [nnz] Δ in forward order (the backward entry j's at sp[sPos + j])
@group(0) @binding(8) var<uniform> p: Params;

override W_BF16: bool = false;
override W_Q4: bool = false;   // 4-bit codes + (scale, zero) words, see q4_vec4()
override QG: u32 = 128u;        // 4-bit group size
override NX: u32 = 16;            // threads along n; thread x owns columns 4*(x + NX*b) + c (b < 2, c < 4)
override BK: u32 = 16;            // reduction slice staged per barrier (multiple of 4)
const TM = 32u;                   // rows per tile (EXPERT_TILE_M); 4 threads along m, thread y owns rows y + 4*i (i < 8)
override NQ: u32 = 2u * NX;       // vec4 columns per tile (TN = 4*NQ)
override BQ: u32 = BK / 4u + 1u;  // vec4s per staged row of dG/dU, padded against bank conflicts

var<workgroup> gxs: array<vec4f, TM * BQ>;  // dG [m][k/4]
var<workgroup> uxs: array<vec4f, TM * BQ>;  // dU [m][k/4]
var<workgroup> gws: array<vec4f, BK * NQ>;  // gate [k][n/4]
var<workgroup> uws: array<vec4f, BK * NQ>;  // up [k][n/4]

// #include decode
// 4-bit weights (quant/FORMAT.md): the binding holds the code words from word 0 and the (scale, zero) words from word
// p.<w>Sz; element i of rows of length L is nibble i % 8 of word i / 8. Decoded in registers, never written back.
// 4 weights from element i on (columns n..n+3), the ones at n + c >= nEnd zero.
fn gate4(i: u32, n: u32, nEnd: u32) -> vec4f {
  if (W_Q4) {
    if (n >= nEnd) { return vec4f(0.0); }
    return q4_vec4(wGate[i >> 3u], i, wGate[q4_sz_word(i, nEnd, QG, p.gateSz)]);
  }
  if (n + 4u <= nEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wGate[i], wGate[i + 1u], wGate[i + 2u], wGate[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wGate[w]; let b = wGate[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wGate[w]; let b = wGate[w + 1u]; let c = wGate[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (n + c < nEnd) { let j = i + c; v[c] = select(bitcast<f32>(wGate[j]), bf16_value(wGate[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn up4(i: u32, n: u32, nEnd: u32) -> vec4f {
  if (W_Q4) {
    if (n >= nEnd) { return vec4f(0.0); }
    return q4_vec4(wUp[i >> 3u], i, wUp[q4_sz_word(i, nEnd, QG, p.upSz)]);
  }
  if (n + 4u <= nEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wUp[i], wUp[i + 1u], wUp[i + 2u], wUp[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wUp[w]; let b = wUp[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wUp[w]; let b = wUp[w + 1u]; let c = wUp[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (n + c < nEnd) { let j = i + c; v[c] = select(bitcast<f32>(wUp[j]), bf16_value(wUp[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn dg4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (k + 4u <= kEnd) { return vec4f(dG[i], dG[i + 1u], dG[i + 2u], dG[i + 3u]); }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (k + c < kEnd) { v[c] = dG[i + c]; } }
  return v;
}
fn du4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (k + 4u <= kEnd) { return vec4f(dU[i], dU[i + 1u], dU[i + 2u], dU[i + 3u]); }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (k + c < kEnd) { v[c] = dU[i + c]; } }
  return v;
}
// a = 4 reduction steps of one row, b* = the matching 4 rows of 4 columns.
fn fma4(a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f { return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }

// Δ of the backward entries j0.. of one column c of H (i ascending) with i < k0 + BK onto the staged gate (or up) tile;
// returns the next entry.
fn add_delta(j0: u32, j1: u32, c: u32, k0: u32, up: bool) -> u32 {
  var j = j0;
  for (; j < j1; j++) {
    let s = (sp[p.sCol + j] >> 16u) - k0;
    if (s >= BK) { break; }
    let d = delta[sp[p.sPos + j]];
    if (up) { uws[s * NQ + c / 4u][c % 4u] += d; } else { gws[s * NQ + c / 4u][c % 4u] += d; }
  }
  return j;
}

fn put(m: u32, nr: u32, r: u32, n: u32, v: vec4f) {
  if (m >= nr) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.H) { dXr[r * p.H + n + c] = v[c]; }
  }
}

@compute @workgroup_size(NX, 4)
fn backward_input(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  if (tile.x < p.e0 || tile.x >= p.e1) { return; }   // another chunk's expert, or past the last tile (NO_EXPERT)
  let e = tile.x - p.e0;   // the weights hold experts e0..e1-1
  let r0 = tile.y;
  let nr = tile.z - tile.y;   // rows in this tile, 1..TM
  let n0 = wid.x * 4u * NQ;
  let H = p.H;
  let IE = p.IE;
  let li = lid.y * NX + lid.x;
  var lo: array<vec4f, 8>;   // row y + 4i: columns 4*x + c
  var hi: array<vec4f, 8>;   // columns 4*(x + NX) + c
  // sparse: thread li walks the gate and up columns of staged columns li and li + 4 NX (TN = 8 NX, 4 NX threads)
  var j: array<u32, 4>;      // next entry: gate a, up a, gate b, up b
  var jEnd: array<u32, 4>;
  if (p.sNnz != 0u) {
    for (var b = 0u; b < 2u; b++) {
      let c = n0 + li + 4u * NX * b;
      if (c < H) {
        let kg = p.sPtr + tile.x * H + c;
        let ku = p.sPtr + (p.E + tile.x) * H + c;
        j[2u * b] = sp[kg]; jEnd[2u * b] = sp[kg + 1u];
        j[2u * b + 1u] = sp[ku]; jEnd[2u * b + 1u] = sp[ku + 1u];
      }
    }
  }
  for (var k0 = 0u; k0 < IE; k0 += BK) {
    for (var q = li; q < TM * (BK / 4u); q += NX * 4u) {
      let m = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      var g = vec4f(0.0);
      var u = vec4f(0.0);
      if (m < nr) {
        g = dg4((r0 + m) * IE + k, k, IE);
        u = du4((r0 + m) * IE + k, k, IE);
      }
      gxs[m * BQ + q % (BK / 4u)] = g;
      uxs[m * BQ + q % (BK / 4u)] = u;
    }
    for (var q = li; q < BK * NQ; q += NX * 4u) {
      let k = k0 + q / NQ;
      let n = n0 + 4u * (q % NQ);
      var g = vec4f(0.0);
      var u = vec4f(0.0);
      if (k < IE) {
        let at = (e * IE + k) * H + n;
        g = gate4(p.gateOff + at, n, H);
        u = up4(p.upOff + at, n, H);
      }
      gws[q] = g;
      uws[q] = u;
    }
    workgroupBarrier();
    if (p.sNnz != 0u) {
      j[0] = add_delta(j[0], jEnd[0], li, k0, false);
      j[1] = add_delta(j[1], jEnd[1], li, k0, true);
      j[2] = add_delta(j[2], jEnd[2], li + 4u * NX, k0, false);
      j[3] = add_delta(j[3], jEnd[3], li + 4u * NX, k0, true);
      workgroupBarrier();
    }
    for (var kq = 0u; kq < BK / 4u; kq++) {
      let w = 4u * kq * NQ + lid.x;
      let b0 = gws[w]; let b1 = gws[w + NQ]; let b2 = gws[w + 2u * NQ]; let b3 = gws[w + 3u * NQ];
      let c0 = uws[w]; let c1 = uws[w + NQ]; let c2 = uws[w + 2u * NQ]; let c3 = uws[w + 3u * NQ];
      let d0 = gws[w + NX]; let d1 = gws[w + NX + NQ]; let d2 = gws[w + NX + 2u * NQ]; let d3 = gws[w + NX + 3u * NQ];
      let f0 = uws[w + NX]; let f1 = uws[w + NX + NQ]; let f2 = uws[w + NX + 2u * NQ]; let f3 = uws[w + NX + 3u * NQ];
      var at = lid.y * BQ + kq;
      var g = gxs[at]; var u = uxs[at];
      lo[0] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[0] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
      at += 4u * BQ; g = gxs[at]; u = uxs[at];
      lo[1] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[1] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
      at += 4u * BQ; g = gxs[at]; u = uxs[at];
      lo[2] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[2] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
      at += 4u * BQ; g = gxs[at]; u = uxs[at];
      lo[3] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[3] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
      if (nr > 16u) {
        at += 4u * BQ; g = gxs[at]; u = uxs[at];
        lo[4] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[4] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
        at += 4u * BQ; g = gxs[at]; u = uxs[at];
        lo[5] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[5] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
        at += 4u * BQ; g = gxs[at]; u = uxs[at];
        lo[6] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[6] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
        at += 4u * BQ; g = gxs[at]; u = uxs[at];
        lo[7] += fma4(g, b0, b1, b2, b3) + fma4(u, c0, c1, c2, c3); hi[7] += fma4(g, d0, d1, d2, d3) + fma4(u, f0, f1, f2, f3);
      }
    }
    workgroupBarrier();
  }
  let m = lid.y;
  let nLo = n0 + 4u * lid.x;
  let nHi = nLo + 4u * NX;
  put(m, nr, r0 + m, nLo, lo[0]); put(m, nr, r0 + m, nHi, hi[0]);
  put(m + 4u, nr, r0 + m + 4u, nLo, lo[1]); put(m + 4u, nr, r0 + m + 4u, nHi, hi[1]);
  put(m + 8u, nr, r0 + m + 8u, nLo, lo[2]); put(m + 8u, nr, r0 + m + 8u, nHi, hi[2]);
  put(m + 12u, nr, r0 + m + 12u, nLo, lo[3]); put(m + 12u, nr, r0 + m + 12u, nHi, hi[3]);
  put(m + 16u, nr, r0 + m + 16u, nLo, lo[4]); put(m + 16u, nr, r0 + m + 16u, nHi, hi[4]);
  put(m + 20u, nr, r0 + m + 20u, nLo, lo[5]); put(m + 20u, nr, r0 + m + 20u, nHi, hi[5]);
  put(m + 24u, nr, r0 + m + 24u, nLo, lo[6]); put(m + 24u, nr, r0 + m + 24u, nHi, hi[6]);
  put(m + 28u, nr, r0 + m + 28u, nLo, lo[7]); put(m + 28u, nr, r0 + m + 28u, nHi, hi[7]);
}
