// Routed experts forward 2/3, grouped GEMM over expert-sorted rows: Y[r] = A[r]·down_e^T for the rows r of expert e.
// Workgroup = one row tile (TM rows, one expert) x TN columns of H; thread = 8 rows x 8 columns. With a sparse table
// (p.sNnz > 0, ops/experts_q4.ts) each staged weight slice gets Δ of the entries whose i falls in it: Y on W0 + Δ.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32, gateSz: u32, upSz: u32, downSz: u32, e0: u32, e1: u32, sPtr: u32, sCol: u32, sPos: u32, sNnz: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> A: array<f32>;              // [R, IE]
@group(0) @binding(1) var<storage, read> wDown: array<u32>;          // [E, H, IE] from downOff: f32 bits, bf16 pairs or 4-bit
@group(0) @binding(2) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;        // [R, H]
@group(0) @binding(4) var<storage, read> sp: array<u32>;         // sparse table (D index space), any buffer when p.sNnz == 0
@group(0) @binding(5) var<storage, read> delta: array<f32>;      // [nnz] Δ in forward order
@group(0) @binding(6) var<uniform> p: Params;

override W_BF16: bool = false;
override W_Q4: bool = false;   // 4-bit codes + (scale, zero) words, see q4_vec4()
override QG: u32 = 128u;        // 4-bit group size
override NX: u32 = 16;            // threads along n; thread x owns columns x + NX*j (j < 8)
override BK: u32 = 16;            // reduction slice staged per barrier (multiple of 4)
const TM = 32u;                   // rows per tile (EXPERT_TILE_M); 4 threads along m, thread y owns rows y + 4*i (i < 8)
override TN: u32 = 8u * NX;
override BQ: u32 = BK / 4u + 1u;  // vec4s per staged row, padded against bank conflicts

var<workgroup> as_: array<vec4f, TM * BQ>;  // [m][k/4]
var<workgroup> ws: array<vec4f, TN * BQ>;   // [n][k/4]

// #include decode
// 4-bit weights (quant/FORMAT.md): the binding holds the code words from word 0 and the (scale, zero) words from word
// p.<w>Sz; element i of rows of length L is nibble i % 8 of word i / 8. Decoded in registers, never written back.
// 4 weights from element i on, the ones at k + c >= kEnd zero.
fn down4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (W_Q4) {
    if (k >= kEnd) { return vec4f(0.0); }
    return q4_vec4(wDown[i >> 3u], i, wDown[q4_sz_word(i, kEnd, QG, p.downSz)]);
  }
  if (k + 4u <= kEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wDown[i], wDown[i + 1u], wDown[i + 2u], wDown[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wDown[w]; let b = wDown[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wDown[w]; let b = wDown[w + 1u]; let c = wDown[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (k + c < kEnd) { let j = i + c; v[c] = select(bitcast<f32>(wDown[j]), bf16_value(wDown[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn a4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (k + 4u <= kEnd) { return vec4f(A[i], A[i + 1u], A[i + 2u], A[i + 3u]); }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (k + c < kEnd) { v[c] = A[i + c]; } }
  return v;
}
// Δ of the entries j0.. of one weight row (forward order: i ascending) with i < k0 + BK onto staged column n; returns
// the next entry.
fn add_delta(j0: u32, j1: u32, n: u32, k0: u32) -> u32 {
  var j = j0;
  for (; j < j1; j++) {
    let s = (sp[p.sCol + j] & 0x7fffu) - k0;
    if (s >= BK) { break; }
    ws[n * BQ + s / 4u][s % 4u] += delta[j];
  }
  return j;
}
fn dots(a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f { return vec4f(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)); }

// Row m of the tile: columns n + NX*j, j < 4 from lo and 4 <= j < 8 from hi.
fn put(m: u32, nr: u32, r: u32, n: u32, lo: vec4f, hi: vec4f) {
  if (m >= nr) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j * NX < p.H) { Y[r * p.H + n + j * NX] = lo[j]; }
    if (n + (j + 4u) * NX < p.H) { Y[r * p.H + n + (j + 4u) * NX] = hi[j]; }
  }
}

@compute @workgroup_size(NX, 4)
fn down(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  if (tile.x < p.e0 || tile.x >= p.e1) { return; }   // another chunk's expert, or past the last tile (NO_EXPERT)
  let e = tile.x - p.e0;   // the weights hold experts e0..e1-1
  let r0 = tile.y;
  let nr = tile.z - tile.y;   // rows in this tile, 1..TM
  let n0 = wid.x * TN;
  let H = p.H;
  let IE = p.IE;
  let li = lid.y * NX + lid.x;
  var lo: array<vec4f, 8>;   // row y + 4i: columns x + NX*j, j < 4
  var hi: array<vec4f, 8>;   // j = 4..7
  // sparse: thread li walks the rows of staged columns li and li + 4 NX (TN = 8 NX, 4 NX threads)
  var ja = 0u; var jaEnd = 0u; var jb = 0u; var jbEnd = 0u;
  if (p.sNnz != 0u) {
    let ka = p.sPtr + tile.x * H + n0 + li;
    if (n0 + li < H) { ja = sp[ka]; jaEnd = sp[ka + 1u]; }
    if (n0 + li + 4u * NX < H) { jb = sp[ka + 4u * NX]; jbEnd = sp[ka + 4u * NX + 1u]; }
  }
  for (var k0 = 0u; k0 < IE; k0 += BK) {
    for (var q = li; q < TM * (BK / 4u); q += NX * 4u) {
      let m = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      var v = vec4f(0.0);
      if (m < nr) { v = a4((r0 + m) * IE + k, k, IE); }
      as_[m * BQ + q % (BK / 4u)] = v;
    }
    for (var q = li; q < TN * (BK / 4u); q += NX * 4u) {
      let n = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      // columns past H compute garbage that is never stored
      ws[n * BQ + q % (BK / 4u)] = down4(p.downOff + (e * H + min(n0 + n, H - 1u)) * IE + k, k, IE);
    }
    workgroupBarrier();
    if (p.sNnz != 0u) {
      ja = add_delta(ja, jaEnd, li, k0);
      jb = add_delta(jb, jbEnd, li + 4u * NX, k0);
      workgroupBarrier();
    }
    for (var kq = 0u; kq < BK / 4u; kq++) {
      let b0 = ws[lid.x * BQ + kq]; let b1 = ws[(lid.x + NX) * BQ + kq];
      let b2 = ws[(lid.x + 2u * NX) * BQ + kq]; let b3 = ws[(lid.x + 3u * NX) * BQ + kq];
      let b4 = ws[(lid.x + 4u * NX) * BQ + kq]; let b5 = ws[(lid.x + 5u * NX) * BQ + kq];
      let b6 = ws[(lid.x + 6u * NX) * BQ + kq]; let b7 = ws[(lid.x + 7u * NX) * BQ + kq];
      var a = as_[lid.y * BQ + kq]; lo[0] += dots(a, b0, b1, b2, b3); hi[0] += dots(a, b4, b5, b6, b7);
      a = as_[(lid.y + 4u) * BQ + kq]; lo[1] += dots(a, b0, b1, b2, b3); hi[1] += dots(a, b4, b5, b6, b7);
      a = as_[(lid.y + 8u) * BQ + kq]; lo[2] += dots(a, b0, b1, b2, b3); hi[2] += dots(a, b4, b5, b6, b7);
      a = as_[(lid.y + 12u) * BQ + kq]; lo[3] += dots(a, b0, b1, b2, b3); hi[3] += dots(a, b4, b5, b6, b7);
      if (nr > 16u) {
        a = as_[(lid.y + 16u) * BQ + kq]; lo[4] += dots(a, b0, b1, b2, b3); hi[4] += dots(a, b4, b5, b6, b7);
        a = as_[(lid.y + 20u) * BQ + kq]; lo[5] += dots(a, b0, b1, b2, b3); hi[5] += dots(a, b4, b5, b6, b7);
        a = as_[(lid.y + 24u) * BQ + kq]; lo[6] += dots(a, b0, b1, b2, b3); hi[6] += dots(a, b4, b5, b6, b7);
        a = as_[(lid.y + 28u) * BQ + kq]; lo[7] += dots(a, b0, b1, b2, b3); hi[7] += dots(a, b4, b5, b6, b7);
      }
    }
    workgroupBarrier();
  }
  let m = lid.y;
  let n = n0 + lid.x;
  put(m, nr, r0 + m, n, lo[0], hi[0]);
  put(m + 4u, nr, r0 + m + 4u, n, lo[1], hi[1]);
  put(m + 8u, nr, r0 + m + 8u, n, lo[2], hi[2]);
  put(m + 12u, nr, r0 + m + 12u, n, lo[3], hi[3]);
  put(m + 16u, nr, r0 + m + 16u, n, lo[4], hi[4]);
  put(m + 20u, nr, r0 + m + 20u, n, lo[5], hi[5]);
  put(m + 24u, nr, r0 + m + 24u, n, lo[6], hi[6]);
  put(m + 28u, nr, r0 + m + 28u, n, lo[7], hi[7]);
}
