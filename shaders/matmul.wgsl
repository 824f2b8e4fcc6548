// Tiled matmul C[i, j] (+)= sum_r A(i, r) * B(r, j) (+ bias[j]) with C [m, n] row-major and A, B read through strided views.
// One kernel serves the linear layer y = x W^T + b (A = x, B = W^T), dx = dy W (A = dy, B = W) and dW += dy^T x (A = dy^T, B = x).

struct Params {
  m: u32, n: u32, k: u32,                              // C is [m, n]; the reduction runs over k
  lda: u32, ldb: u32, ldc: u32,                        // row strides (elements) of A, B, C as stored
  a_off: u32, b_off: u32, c_off: u32, bias_off: u32,   // element offsets into each buffer
  accumulate: u32, has_bias: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;        // A_T ? [k, m] : [m, k]
@group(0) @binding(1) var<storage, read> b: array<u32>;        // B_T ? [n, k] : [k, n]; f32 bits, or two bf16 a word (B_BF16)
@group(0) @binding(2) var<storage, read> bias: array<f32>;     // [n], read only when has_bias; A_EXP: a shift per row of A [m]
@group(0) @binding(3) var<storage, read_write> c: array<f32>;  // [m, n] at c_off with row stride ldc
@group(0) @binding(4) var<uniform> p: Params;

override A_T: bool = false;   // A(i, r) at r*lda + i (else i*lda + r)
override B_T: bool = true;    // B(r, j) at j*ldb + r: a PyTorch [out, in] weight (else r*ldb + j)
override B_BF16: bool = false;
override TX: u32 = 16;        // threads along n, 4 columns each
override TY: u32 = 16;        // threads along m, 4 rows each
override BK: u32 = 16;        // reduction slice staged in workgroup memory
override A_EXP: bool = false;       // A(i, r) = exp(stored - bias[bias_off + i]) (the LM head's dlogits from its logits: ops/xent.ts)
override ROWS_FAST: bool = false;   // the grid is [row tiles, column tiles] (else [column tiles, row tiles]): ops/matmul.ts
override BM = TY * 4u;
override BN = TX * 4u;
// #include decode

var<workgroup> As: array<vec4f, BK * TY>;   // [BK, BM], 4 consecutive rows per vec4
var<workgroup> Bs: array<vec4f, BK * TX>;   // [BK, BN], 4 consecutive columns per vec4

fn load_a(i: u32, r: u32) -> f32 {
  if (i >= p.m || r >= p.k) { return 0.0; }
  let v = a[p.a_off + select(i * p.lda + r, r * p.lda + i, A_T)];
  if (A_EXP) { return exp(v - bias[p.bias_off + i]); }
  return v;
}

fn load_b(r: u32, j: u32) -> f32 {
  if (r >= p.k || j >= p.n) { return 0.0; }
  let e = p.b_off + select(r * p.ldb + j, j * p.ldb + r, B_T);
  if (B_BF16) {
    let word = b[e >> 1u];
    return bf16_value(word, (e & 1u) == 1u);
  }
  return bitcast<f32>(b[e]);
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tid = lid.y * TX + lid.x;
  let i0 = select(wid.y, wid.x, ROWS_FAST) * BM;
  let j0 = select(wid.x, wid.y, ROWS_FAST) * BN;
  var acc: array<vec4f, 4>;   // rows i0 + 4*lid.y + u, columns j0 + 4*lid.x + (0..3)
  for (var r0 = 0u; r0 < p.k; r0 += BK) {
    // Stage the tiles; neighbouring threads walk the dimension that is contiguous in memory.
    for (var l = tid; l < BK * BM; l += TX * TY) {
      let ii = select(l / BK, l % BM, A_T);
      let rr = select(l % BK, l / BM, A_T);
      As[rr * TY + ii / 4u][ii % 4u] = load_a(i0 + ii, r0 + rr);
    }
    for (var l = tid; l < BK * BN; l += TX * TY) {
      let jj = select(l % BN, l / BK, B_T);
      let rr = select(l / BN, l % BK, B_T);
      Bs[rr * TX + jj / 4u][jj % 4u] = load_b(r0 + rr, j0 + jj);
    }
    workgroupBarrier();
    for (var rr = 0u; rr < BK; rr++) {
      let av = As[rr * TY + lid.y];
      let bv = Bs[rr * TX + lid.x];
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < 4u; u++) {
    let i = i0 + lid.y * 4u + u;
    if (i >= p.m) { break; }
    for (var v = 0u; v < 4u; v++) {
      let j = j0 + lid.x * 4u + v;
      if (j >= p.n) { break; }
      var out = acc[u][v];
      if (p.has_bias != 0u) { out += bias[p.bias_off + j]; }
      let ci = p.c_off + i * p.ldc + j;
      if (p.accumulate != 0u) { out += c[ci]; }
      c[ci] = out;
    }
  }
}
