// Attention backward, query side: one workgroup per (query block, head, sample) recomputes P_ij = exp(scale q_i.k_j - lse_i)
// block by block and accumulates dq_i = scale * sum_j P_ij (dO_i.v_j - delta_i) k_j (assigned). No atomics.

struct Params { batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;          // [T, NH, DQK]
@group(0) @binding(1) var<storage, read> k: array<f32>;          // [T, NKV, DQK]
@group(0) @binding(2) var<storage, read> v: array<f32>;          // [T, NKV, DV]
@group(0) @binding(3) var<storage, read> dout: array<f32>;       // [T, NH, DV]
@group(0) @binding(4) var<storage, read> lse: array<f32>;        // [T, NH]
@group(0) @binding(5) var<storage, read> delta: array<f32>;      // [T, NH]
@group(0) @binding(6) var<storage, read_write> dq: array<f32>;   // [T, NH, DQK]
@group(0) @binding(7) var<uniform> p: Params;

override TX: u32 = 16;   // threads along keys and dq dims
override TY: u32 = 16;   // threads along queries
override DQK: u32 = 128;
override DV: u32 = 128;
const R = 4u;            // a thread owns R query rows (ty + TY*i) x R keys (tx + TX*j) of a score block
const DC = 16u;          // head dims staged per step of Q.K^T and dO.V^T
const KC = 8u;           // key rows staged per step of dS.K
const MAXC = 16u;        // dq dims per thread: DQK <= MAXC * TX
override BQ: u32 = R * TY;
override BK: u32 = R * TX;
override PS: u32 = R * TX + 1u;
override NCQ: u32 = (DQK + TX - 1u) / TX;

var<workgroup> as_: array<f32, DC * BQ>;     // [DC, BQ] query-side chunk (q or dO), transposed
var<workgroup> bs: array<f32, DC * BK>;      // [DC, BK] key-side chunk (k or v), transposed
var<workgroup> ps: array<f32, BQ * PS>;      // [BQ, BK] dS
var<workgroup> krows: array<f32, KC * DQK>;  // [KC, DQK] key rows

fn visible(i: u32, j: u32) -> bool { return j <= i && i < p.seq && (p.window == 0u || i - j < p.window); }

// This thread's R x R products of the block: query-side rows (q, or dO when `grad`) . key-side rows (k, or v), DC dims at a time.
fn block_products(grad: bool, q0: u32, k0: u32, tok0: u32, h: u32, g: u32, tx: u32, ty: u32) -> array<f32, R * R> {
  let li = ty * TX + tx;
  let NT = TX * TY;
  let D = select(DQK, DV, grad);
  var s = array<f32, R * R>();
  for (var d0 = 0u; d0 < D; d0 += DC) {
    for (var e = li; e < DC * BQ; e += NT) {
      let r = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (q0 + r < p.seq && d < D) {
        let row = (tok0 + q0 + r) * p.n_heads + h;
        if (grad) { x = dout[row * DV + d]; } else { x = q[row * DQK + d]; }
      }
      as_[(e % DC) * BQ + r] = x;
    }
    for (var e = li; e < DC * BK; e += NT) {
      let c = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (k0 + c < p.seq && d < D) {
        let row = (tok0 + k0 + c) * p.n_kv_heads + g;
        if (grad) { x = v[row * DV + d]; } else { x = k[row * DQK + d]; }
      }
      bs[(e % DC) * BK + c] = x;
    }
    workgroupBarrier();
    for (var d = 0u; d < DC; d++) {
      var a = array<f32, R>();
      var b = array<f32, R>();
      for (var i = 0u; i < R; i++) { a[i] = as_[d * BQ + ty + TY * i]; b[i] = bs[d * BK + tx + TX * i]; }
      for (var i = 0u; i < R; i++) { for (var j = 0u; j < R; j++) { s[i * R + j] += a[i] * b[j]; } }
    }
    workgroupBarrier();
  }
  return s;
}

@compute @workgroup_size(TX, TY)
fn backward_dq(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tx = lid.x;
  let ty = lid.y;
  let li = ty * TX + tx;
  let NT = TX * TY;
  let q0 = wid.x * BQ;
  let h = wid.y;
  let tok0 = wid.z * p.seq;
  let NH = p.n_heads;
  let NKV = p.n_kv_heads;
  let g = h / (NH / NKV);
  var row_lse = array<f32, R>();
  var row_delta = array<f32, R>();
  for (var i = 0u; i < R; i++) {
    let r = q0 + ty + TY * i;
    if (r < p.seq) { row_lse[i] = lse[(tok0 + r) * NH + h]; row_delta[i] = delta[(tok0 + r) * NH + h]; }
  }
  var acc = array<f32, R * MAXC>();  // dq rows ty + TY*i, dims tx + TX*j at [i * MAXC + j]

  let k_end = min(q0 + BQ, p.seq);
  var k_begin = 0u;
  if (p.window > 0u && q0 + 1u > p.window) { k_begin = q0 + 1u - p.window; }
  for (var k0 = k_begin / BK * BK; k0 < k_end; k0 += BK) {
    // ---- S = Q K^T and dP = dO V^T for this block
    let s = block_products(false, q0, k0, tok0, h, g, tx, ty);
    let dp = block_products(true, q0, k0, tok0, h, g, tx, ty);
    // ---- dS = P * (dP - delta)
    for (var i = 0u; i < R; i++) {
      for (var j = 0u; j < R; j++) {
        let r = ty + TY * i;
        let c = tx + TX * j;
        let pij = exp(s[i * R + j] * p.scale - row_lse[i]);
        ps[r * PS + c] = select(0.0, pij * (dp[i * R + j] - row_delta[i]), visible(q0 + r, k0 + c));
      }
    }
    workgroupBarrier();

    // ---- dq += dS K, KC key rows at a time
    for (var c0 = 0u; c0 < BK; c0 += KC) {
      for (var e = li; e < KC * DQK; e += NT) {
        let kk = e / DQK;
        var x = 0.0;
        if (k0 + c0 + kk < p.seq) { x = k[((tok0 + k0 + c0 + kk) * NKV + g) * DQK + e % DQK]; }
        krows[e] = x;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KC; kk++) {
        for (var i = 0u; i < R; i++) {
          let ds = ps[(ty + TY * i) * PS + c0 + kk];
          for (var j = 0u; j < NCQ; j++) {
            let d = tx + TX * j;
            if (d < DQK) { acc[i * MAXC + j] += ds * krows[kk * DQK + d]; }
          }
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < R; i++) {
    let r = ty + TY * i;
    if (q0 + r < p.seq) {
      for (var j = 0u; j < NCQ; j++) {
        let d = tx + TX * j;
        if (d < DQK) { dq[((tok0 + q0 + r) * NH + h) * DQK + d] = acc[i * MAXC + j] * p.scale; }
      }
    }
  }
}
