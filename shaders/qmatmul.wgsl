// Fused 4-bit dequantize + matmul, tiled: C [M, cols] = A [M, R] · B [R, cols], B read from Ŵ [N, K] (quant/FORMAT.md)
// and dequantized into workgroup memory only. forward: y = x · Ŵ^T (R = K); backward_input: dx (+)= dy · Ŵ (R = N).

struct Params { M: u32, N: u32, K: u32, G: u32, groups_per_row: u32, row_offset: u32, x_offset: u32, y_offset: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;          // forward: x [M, K]; backward_input: dy [M, N]
@group(0) @binding(1) var<storage, read> q: array<u32>;          // [row_offset + N, K/8] nibbles
@group(0) @binding(2) var<storage, read> sz: array<u32>;         // [row_offset + N, groups_per_row] f16 s | f16 z << 16
@group(0) @binding(3) var<storage, read_write> c: array<f32>;    // forward: y [M, N]; backward_input: dx [M, K]
@group(0) @binding(4) var<uniform> p: Params;

override TM: u32 = 64;   // rows of C per workgroup (multiple of 4)
override TC: u32 = 64;   // columns of C per workgroup (multiple of 8)
override TR: u32 = 32;   // reduction depth per step (multiple of 8)
override NT: u32 = (TM / 4u) * (TC / 4u);  // threads; each owns a 4x4 block of C

var<workgroup> at: array<vec4<f32>, TM * TR / 4>;   // A tile [TM][TR] (rows as loaded: conflict-free stores)
var<workgroup> bt: array<vec4<f32>, TR * TC / 4>;   // B tile [TR][TC]
var<private> acc: array<vec4<f32>, 4>;

// #include decode

fn set_a(r: u32, m: u32, v: f32) { at[(m * TR + r) / 4u][r % 4u] = v; }
fn set_b(r: u32, col: u32, v: f32) { bt[(r * TC + col) / 4u][col % 4u] = v; }

// A tile from a [M, R] row-major at `base`: element (m0 + m, r0 + r), zero outside.
fn load_a(m0: u32, r0: u32, R: u32, base: u32, lid: u32) {
  for (var i = lid; i < TM * TR; i += NT) {
    let r = i % TR;
    let m = i / TR;
    var v = 0.0;
    if (m0 + m < p.M && r0 + r < R) { v = a[base + (m0 + m) * R + r0 + r]; }
    set_a(r, m, v);
  }
}

// 8 dequantized weights Ŵ[n, k..k+8) (k a multiple of 8, inside K).
fn weights8(n: u32, k: u32) -> array<f32, 8> {
  let row = p.row_offset + n;
  let word = q[row * (p.K / 8u) + k / 8u];
  let packed = sz[row * p.groups_per_row + k / p.G];
  let s = q4_scale(packed);
  let z = q4_zero(packed);
  var out: array<f32, 8>;
  for (var j = 0u; j < 8u; j++) { out[j] = q4_weight((word >> (j * 4u)) & 0xfu, s, z); }
  return out;
}

// acc[i] (row tm*4+i, columns tc*4..+4) += A[tm*4+i, :] · B[:, tc*4..+4], four reduction steps at a time.
fn multiply(tm: u32, tc: u32) {
  for (var r = 0u; r < TR; r += 4u) {
    let b0 = bt[(r * TC) / 4u + tc];
    let b1 = bt[((r + 1u) * TC) / 4u + tc];
    let b2 = bt[((r + 2u) * TC) / 4u + tc];
    let b3 = bt[((r + 3u) * TC) / 4u + tc];
    let a0 = at[((tm * 4u) * TR + r) / 4u];
    let a1 = at[((tm * 4u + 1u) * TR + r) / 4u];
    let a2 = at[((tm * 4u + 2u) * TR + r) / 4u];
    let a3 = at[((tm * 4u + 3u) * TR + r) / 4u];
    acc[0] += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
    acc[1] += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
    acc[2] += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
    acc[3] += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
  }
}

fn store(m0: u32, c0: u32, tm: u32, tc: u32, cols: u32, base: u32) {
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + tm * 4u + i;
    if (m >= p.M) { return; }
    for (var j = 0u; j < 4u; j++) {
      let col = c0 + tc * 4u + j;
      if (col < cols) {
        let o = base + m * cols + col;
        if (p.accumulate == 1u) { c[o] += acc[i][j]; } else { c[o] = acc[i][j]; }
      }
    }
  }
}

// y [M, N] = x [M, K] · Ŵ^T: B[k][n] = Ŵ[n, k]; reduction over K.
@compute @workgroup_size(NT)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let c0 = wid.x * TC;
  let m0 = wid.y * TM;
  let tc = lid % (TC / 4u);
  let tm = lid / (TC / 4u);
  for (var r0 = 0u; r0 < p.K; r0 += TR) {
    load_a(m0, r0, p.K, p.x_offset, lid);
    for (var i = lid; i < TC * TR / 8u; i += NT) {
      let kw = i % (TR / 8u);
      let col = i / (TR / 8u);
      let n = c0 + col;
      let k = r0 + kw * 8u;
      var w8: array<f32, 8>;
      if (n < p.N && k < p.K) { w8 = weights8(n, k); }
      for (var j = 0u; j < 8u; j++) { set_b(kw * 8u + j, col, w8[j]); }
    }
    workgroupBarrier();
    multiply(tm, tc);
    workgroupBarrier();
  }
  store(m0, c0, tm, tc, p.N, p.y_offset);
}

// dx [M, K] (+)= dy [M, N] · Ŵ: B[n][k] = Ŵ[n, k]; reduction over N.
@compute @workgroup_size(NT)
fn backward_input(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let c0 = wid.x * TC;
  let m0 = wid.y * TM;
  let tc = lid % (TC / 4u);
  let tm = lid / (TC / 4u);
  for (var r0 = 0u; r0 < p.N; r0 += TR) {
    load_a(m0, r0, p.N, p.y_offset, lid);
    for (var i = lid; i < TR * TC / 8u; i += NT) {
      let kw = i % (TC / 8u);
      let r = i / (TC / 8u);
      let n = r0 + r;
      let k = c0 + kw * 8u;
      var w8: array<f32, 8>;
      if (n < p.N && k < p.K) { w8 = weights8(n, k); }
      for (var j = 0u; j < 8u; j++) { set_b(r, kw * 8u + j, w8[j]); }
    }
    workgroupBarrier();
    multiply(tm, tc);
    workgroupBarrier();
  }
  store(m0, c0, tm, tc, p.K, p.x_offset);
}
