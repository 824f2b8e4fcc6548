// Routed experts forward 1/3, grouped GEMM over expert-sorted rows: for row r of expert e (token t = rowPair[r] / K),
// G = x_t·gate_e^T, U = x_t·up_e^T, A = silu(G)*U. Workgroup = one row tile (TM rows, one expert) x TN columns of IE;
// thread = 8 rows x 4 columns of both G and U. With a sparse table (4-bit base with trained entries, p.sNnz > 0, see
// ops/experts_q4.ts), each staged weight slice gets Δ of the entries whose h falls in it before the multiply: the
// products are on W0 + Δ, written once.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32, gateSz: u32, upSz: u32, downSz: u32, e0: u32, e1: u32, sPtr: u32, sCol: u32, sPos: u32, sNnz: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;              // [T, H]
@group(0) @binding(1) var<storage, read> wGate: array<u32>;          // [E, IE, H] from gateOff: f32 bits, bf16 pairs or 4-bit
@group(0) @binding(2) var<storage, read> wUp: array<u32>;            // [E, IE, H] from upOff
@group(0) @binding(3) var<storage, read> rowPair: array<u32>;        // [R] pair t*K+k of each sorted row
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> G: array<f32>;        // [R, IE]
@group(0) @binding(6) var<storage, read_write> U: array<f32>;        // [R, IE]
@group(0) @binding(7) var<storage, read_write> A: array<f32>;        // [R, IE]
@group(0) @binding(8) var<storage, read> sp: array<u32>;         // sparse table (G index space), any buffer when p.sNnz == 0
@group(0) @binding(9) var<storage, read> delta: array<f32>;      // [nnz] Δ in forward order
@group(0) @binding(10) var<uniform> p: Params;

override W_BF16: bool = false;
override W_Q4: bool = false;   // 4-bit codes + (scale, zero) words, see q4_vec4()
override QG: u32 = 128u;        // 4-bit group size
override NX: u32 = 16;            // threads along n; thread x owns columns x + NX*j (j < 4)
override BK: u32 = 16;            // reduction slice staged per barrier (multiple of 4)
const TM = 32u;                   // rows per tile (EXPERT_TILE_M); 4 threads along m, thread y owns rows y + 4*i (i < 8)
override TN: u32 = 4u * NX;
override BQ: u32 = BK / 4u + 1u;  // vec4s per staged row, padded against bank conflicts

var<workgroup> xs: array<vec4f, TM * BQ>;   // [m][k/4]
var<workgroup> gs: array<vec4f, TN * BQ>;   // [n][k/4]
var<workgroup> us: array<vec4f, TN * BQ>;   // [n][k/4]
var<workgroup> tok: array<u32, TM>;

// #include decode
// 4-bit weights (quant/FORMAT.md): the binding holds the code words from word 0 and the (scale, zero) words from word
// p.<w>Sz; element i of rows of length L is nibble i % 8 of word i / 8. Decoded in registers, never written back.
// 4 weights from element i on, the ones at k + c >= kEnd zero.
fn gate4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (W_Q4) {
    if (k >= kEnd) { return vec4f(0.0); }
    return q4_vec4(wGate[i >> 3u], i, wGate[q4_sz_word(i, kEnd, QG, p.gateSz)]);
  }
  if (k + 4u <= kEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wGate[i], wGate[i + 1u], wGate[i + 2u], wGate[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wGate[w]; let b = wGate[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wGate[w]; let b = wGate[w + 1u]; let c = wGate[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (k + c < kEnd) { let j = i + c; v[c] = select(bitcast<f32>(wGate[j]), bf16_value(wGate[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn up4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (W_Q4) {
    if (k >= kEnd) { return vec4f(0.0); }
    return q4_vec4(wUp[i >> 3u], i, wUp[q4_sz_word(i, kEnd, QG, p.upSz)]);
  }
  if (k + 4u <= kEnd) {
    if (!W_BF16) { return bitcast<vec4f>(vec4u(wUp[i], wUp[i + 1u], wUp[i + 2u], wUp[i + 3u])); }
    let w = i >> 1u;
    if ((i & 1u) == 0u) { let a = wUp[w]; let b = wUp[w + 1u]; return vec4f(bf16_value(a, false), bf16_value(a, true), bf16_value(b, false), bf16_value(b, true)); }
    let a = wUp[w]; let b = wUp[w + 1u]; let c = wUp[w + 2u];
    return vec4f(bf16_value(a, true), bf16_value(b, false), bf16_value(b, true), bf16_value(c, false));
  }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (k + c < kEnd) { let j = i + c; v[c] = select(bitcast<f32>(wUp[j]), bf16_value(wUp[j >> 1u], (j & 1u) == 1u), W_BF16); }
  }
  return v;
}
fn x4(i: u32, k: u32, kEnd: u32) -> vec4f {
  if (k + 4u <= kEnd) { return vec4f(x[i], x[i + 1u], x[i + 2u], x[i + 3u]); }
  var v = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (k + c < kEnd) { v[c] = x[i + c]; } }
  return v;
}
// Δ of the entries j0.. of one weight row (forward order: h ascending) with h < k0 + BK onto staged column n; returns the
// next entry. `up` picks the staged tile.
fn add_delta(j0: u32, j1: u32, n: u32, k0: u32, up: bool) -> u32 {
  var j = j0;
  for (; j < j1; j++) {
    let s = (sp[p.sCol + j] & 0x7fffu) - k0;
    if (s >= BK) { break; }
    if (up) { us[n * BQ + s / 4u][s % 4u] += delta[j]; } else { gs[n * BQ + s / 4u][s % 4u] += delta[j]; }
  }
  return j;
}
fn dots(a: vec4f, b0: vec4f, b1: vec4f, b2: vec4f, b3: vec4f) -> vec4f { return vec4f(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)); }

fn put(m: u32, nr: u32, r: u32, n0: u32, g: vec4f, u: vec4f) {
  if (m >= nr) { return; }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j * NX;
    if (n < p.IE) {
      let at = r * p.IE + n;
      G[at] = g[j];
      U[at] = u[j];
      A[at] = g[j] / (1.0 + exp(-g[j])) * u[j];
    }
  }
}

@compute @workgroup_size(NX, 4)
fn gate_up(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  if (tile.x < p.e0 || tile.x >= p.e1) { return; }   // another chunk's expert, or past the last tile (NO_EXPERT)
  let e = tile.x - p.e0;   // the weights hold experts e0..e1-1
  let r0 = tile.y;
  let nr = tile.z - tile.y;   // rows in this tile, 1..TM
  let n0 = wid.x * TN;
  let H = p.H;
  let IE = p.IE;
  let li = lid.y * NX + lid.x;
  for (var m = li; m < TM; m += NX * 4u) { tok[m] = rowPair[r0 + min(m, nr - 1u)] / p.K; }
  workgroupBarrier();
  var g: array<vec4f, 8>;   // rows y + 4i, columns x + NX*j
  var u: array<vec4f, 8>;
  // sparse: thread li walks the gate and up rows of staged column li (TN = 4 NX threads)
  var jg = 0u; var jgEnd = 0u; var ju = 0u; var juEnd = 0u;
  if (p.sNnz != 0u && n0 + li < IE) {
    let kg = p.sPtr + tile.x * IE + n0 + li;
    let ku = p.sPtr + (p.E + tile.x) * IE + n0 + li;
    jg = sp[kg]; jgEnd = sp[kg + 1u]; ju = sp[ku]; juEnd = sp[ku + 1u];
  }
  for (var k0 = 0u; k0 < H; k0 += BK) {
    for (var q = li; q < TM * (BK / 4u); q += NX * 4u) {
      let m = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      var v = vec4f(0.0);
      if (m < nr) { v = x4(tok[m] * H + k, k, H); }
      xs[m * BQ + q % (BK / 4u)] = v;
    }
    for (var q = li; q < TN * (BK / 4u); q += NX * 4u) {
      let n = q / (BK / 4u);
      let k = k0 + 4u * (q % (BK / 4u));
      let row = (e * IE + min(n0 + n, IE - 1u)) * H + k;   // columns past IE compute garbage that is never stored
      gs[n * BQ + q % (BK / 4u)] = gate4(p.gateOff + row, k, H);
      us[n * BQ + q % (BK / 4u)] = up4(p.upOff + row, k, H);
    }
    workgroupBarrier();
    if (p.sNnz != 0u) {
      jg = add_delta(jg, jgEnd, li, k0, false);
      ju = add_delta(ju, juEnd, li, k0, true);
      workgroupBarrier();
    }
    for (var kq = 0u; kq < BK / 4u; kq++) {
      let b0 = gs[lid.x * BQ + kq]; let b1 = gs[(lid.x + NX) * BQ + kq];
      let b2 = gs[(lid.x + 2u * NX) * BQ + kq]; let b3 = gs[(lid.x + 3u * NX) * BQ + kq];
      let c0 = us[lid.x * BQ + kq]; let c1 = us[(lid.x + NX) * BQ + kq];
      let c2 = us[(lid.x + 2u * NX) * BQ + kq]; let c3 = us[(lid.x + 3u * NX) * BQ + kq];
      var a = xs[lid.y * BQ + kq];
      g[0] += dots(a, b0, b1, b2, b3); u[0] += dots(a, c0, c1, c2, c3);
      a = xs[(lid.y + 4u) * BQ + kq]; g[1] += dots(a, b0, b1, b2, b3); u[1] += dots(a, c0, c1, c2, c3);
      a = xs[(lid.y + 8u) * BQ + kq]; g[2] += dots(a, b0, b1, b2, b3); u[2] += dots(a, c0, c1, c2, c3);
      a = xs[(lid.y + 12u) * BQ + kq]; g[3] += dots(a, b0, b1, b2, b3); u[3] += dots(a, c0, c1, c2, c3);
      if (nr > 16u) {
        a = xs[(lid.y + 16u) * BQ + kq]; g[4] += dots(a, b0, b1, b2, b3); u[4] += dots(a, c0, c1, c2, c3);
        a = xs[(lid.y + 20u) * BQ + kq]; g[5] += dots(a, b0, b1, b2, b3); u[5] += dots(a, c0, c1, c2, c3);
        a = xs[(lid.y + 24u) * BQ + kq]; g[6] += dots(a, b0, b1, b2, b3); u[6] += dots(a, c0, c1, c2, c3);
        a = xs[(lid.y + 28u) * BQ + kq]; g[7] += dots(a, b0, b1, b2, b3); u[7] += dots(a, c0, c1, c2, c3);
      }
    }
    workgroupBarrier();
  }
  let n = n0 + lid.x;
  let m = lid.y;
  put(m, nr, r0 + m, n, g[0], u[0]);
  put(m + 4u, nr, r0 + m + 4u, n, g[1], u[1]);
  put(m + 8u, nr, r0 + m + 8u, n, g[2], u[2]);
  put(m + 12u, nr, r0 + m + 12u, n, g[3], u[3]);
  put(m + 16u, nr, r0 + m + 16u, n, g[4], u[4]);
  put(m + 20u, nr, r0 + m + 20u, n, g[5], u[5]);
  put(m + 24u, nr, r0 + m + 24u, n, g[6], u[6]);
  put(m + 28u, nr, r0 + m + 28u, n, g[7], u[7]);
}
