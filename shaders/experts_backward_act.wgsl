// Routed experts backward 2/3, grouped GEMM over expert-sorted rows: dA = dY·down_e, then through A = silu(G)*U:
// dG = dA * U * silu'(G), dU = dA * silu(G) (=). Workgroup = one row tile (TM rows, one expert) x TN columns of IE;
// thread = 8 rows x 8 columns (two runs of 4). With a sparse table (p.sNnz > 0, ops/experts_q4.ts; transposed: entries
// by column of IE, h ascending) each staged weight slice gets Δ of the entries whose h falls in it: dA on W0 + Δ.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32, gateSz: u32, upSz: u32, downSz: u32, e0: u32, e1: u32, sPtr: u32, sCol: u32, sPos: u32, sNnz: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> dY: array<f32>;             // [R, H]
@group(0) @binding(1) var<storage, read> wDown: array<u32>;          // [E, H, IE] from downOff: f32 bits, bf16 pairs or 4-bit
@group(0) @binding(2) var<storage, read> G: array<f32>;              // [R, IE]
@group(0) @binding(3) var<storage, read> U: array<f32>;              // [R, IE]
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> dG: array<f32>;       // [R, IE]
@group(0) @binding(6) var<storage, read_write> dU: array<f32>;       // [R, IE]
@group(0) @binding(7) var<storage, read> sp: array<u32>;         // sparse table (D index space), any buffer when p.sNnz == 0
@group(0) @binding(8) var<storage, read> delta: array<f32>;      // [nnz] Δ in forward order (the backward entry j's at sp[sPos + j])
@group(0) @binding(9) var<uniform> p: Params;

override W_BF16: bool = false;
override W_Q4: bool = false;   // 4-bit codes + (scale, zero) words, see q4_vec4()
override QG: u32 = 128u;        // 4-bit group size
override NX: u32 = 16;            // threads along n; thread x owns columns 4*(x + NX*b) + c (b < 2, c < 4)
override BK: u32 = 16;            // reduction slice staged per barrier (multiple of 4)
const TM = 32u;                   // rows per tile (EXPERT_TILE_M); 4 threads along m, thread y owns rows y + 4*i (i < 8)
override NQ: u32 = 2u * NX;       // vec4 columns per tile (TN = 4*NQ)
override BQ: u32 = BK / 4u + 1u;  // vec4s per staged row of dY, padded against bank conflicts

var<workgroup> ys: array<vec4f, TM * BQ>;   // dY [m][k/4]
var<workgroup> ws: array<vec4f, BK * NQ>;   // down [k][n/4]

// #include decode
// 4-bit weights (quant/FORMAT.md): the binding holds the code words from word 0 and the (scale, zero) words from word
// p.<w>Sz; element i of rows of length L is nibble i % 8 of word i / 8. Decoded in registers, never written back.
// 4 weights from element i on (columns n..n+3), the ones at n + c >= nEnd zero.
fn down4(i: u32, n: u32, nEnd: u32) -> vec4f {
  if (W_Q4) {
    if (n >= nEnd) { return vec4f(0.0); }
    return q4_vec4(wDown[i >> 3u], i, wDown[q4_sz_word(i, nEnd, QG, p.downSz)]);
  }
  if (n + 4u <= nEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wDown[i], wDown[i + 1u], wDown[i + 2u], wDown[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wDown[w]; let b = wDown[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wDown[w]; let b = wDown[w + 1u]; let c = wDown[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (n + c < nEnd) { let j = i + c; v[c] = select(bitcast<f32>(wDown[j]), bf16_value(wDown[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn dy4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (k + 4u <= kEnd) { return vec4f(dY[i], dY[i + 1u], dY[i + 2u], dY[i + 3u]); }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (k + c < kEnd) { v[c] = dY[i + c]; } }
  return v;
}
// a = 4 reduction steps of one row, b* = the matching 4 rows of 4 columns.
fn fma4(a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f { return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3; }

// Δ of the backward entries j0.. of one column c of IE (h ascending) with h < k0 + BK onto the staged tile; returns the
// next entry.
fn add_delta(j0: u32, j1: u32, c: u32, k0: u32) -> u32 {
  var j = j0;
  for (; j < j1; j++) {
    let s = (sp[p.sCol + j] >> 16u) - k0;
    if (s >= BK) { break; }
    ws[s * NQ + c / 4u][c % 4u] += delta[sp[p.sPos + j]];
  }
  return j;
}

fn put(m: u32, nr: u32, r: u32, n: u32, da: vec4f) {
  if (m >= nr) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.IE) {
      let at = r * p.IE + n + c;
      let g = G[at];
      let sg = 1.0 / (1.0 + exp(-g));
      dG[at] = da[c] * U[at] * sg * (1.0 + g * (1.0 - sg));
      dU[at] = da[c] * g * sg;
    }
  }
}

@compute @workgroup_size(NX, 4)
fn backward_act(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
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
  // sparse: thread li walks staged columns li and li + 4 NX (TN = 8 NX, 4 NX threads)
  var ja = 0u; var jaEnd = 0u; var jb = 0u; var jbEnd = 0u;
  if (p.sNnz != 0u) {
    let ka = p.sPtr + tile.x * IE + n0 + li;
    if (n0 + li < IE) { ja = sp[ka]; jaEnd = sp[ka + 1u]; }
    if (n0 + li + 4u * NX < IE) { jb = sp[ka + 4u * NX]; jbEnd = sp[ka + 4u * NX + 1u]; }
  }
  for (var k0 = 0u; k0 < H; k0 += BK) {
    for (var q = li; q < TM * (BK / 4u); q += NX * 4u) {
      let m = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      var v = vec4f(0.0);
      if (m < nr) { v = dy4((r0 + m) * H + k, k, H); }
      ys[m * BQ + q % (BK / 4u)] = v;
    }
    for (var q = li; q < BK * NQ; q += NX * 4u) {
      let k = k0 + q / NQ;
      let n = n0 + 4u * (q % NQ);
      var v = vec4f(0.0);
      if (k < H) { v = down4(p.downOff + (e * H + k) * IE + n, n, IE); }
      ws[q] = v;
    }
    workgroupBarrier();
    if (p.sNnz != 0u) {
      ja = add_delta(ja, jaEnd, li, k0);
      jb = add_delta(jb, jbEnd, li + 4u * NX, k0);
      workgroupBarrier();
    }
    for (var kq = 0u; kq < BK / 4u; kq++) {
      let w = 4u * kq * NQ + lid.x;
      let b0 = ws[w]; let b1 = ws[w + NQ]; let b2 = ws[w + 2u * NQ]; let b3 = ws[w + 3u * NQ];
      let c0 = ws[w + NX]; let c1 = ws[w + NX + NQ]; let c2 = ws[w + NX + 2u * NQ]; let c3 = ws[w + NX + 3u * NQ];
      var a = ys[lid.y * BQ + kq]; lo[0] += fma4(a, b0, b1, b2, b3); hi[0] += fma4(a, c0, c1, c2, c3);
      a = ys[(lid.y + 4u) * BQ + kq]; lo[1] += fma4(a, b0, b1, b2, b3); hi[1] += fma4(a, c0, c1, c2, c3);
      a = ys[(lid.y + 8u) * BQ + kq]; lo[2] += fma4(a, b0, b1, b2, b3); hi[2] += fma4(a, c0, c1, c2, c3);
      a = ys[(lid.y + 12u) * BQ + kq]; lo[3] += fma4(a, b0, b1, b2, b3); hi[3] += fma4(a, c0, c1, c2, c3);
      if (nr > 16u) {
        a = ys[(lid.y + 16u) * BQ + kq]; lo[4] += fma4(a, b0, b1, b2, b3); hi[4] += fma4(a, c0, c1, c2, c3);
        a = ys[(lid.y + 20u) * BQ + kq]; lo[5] += fma4(a, b0, b1, b2, b3); hi[5] += fma4(a, c0, c1, c2, c3);
        a = ys[(lid.y + 24u) * BQ + kq]; lo[6] += fma4(a, b0, b1, b2, b3); hi[6] += fma4(a, c0, c1, c2, c3);
        a = ys[(lid.y + 28u) * BQ + kq]; lo[7] += fma4(a, b0, b1, b2, b3); hi[7] += fma4(a, c0, c1, c2, c3);
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
