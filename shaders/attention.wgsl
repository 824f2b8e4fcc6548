// Causal grouped-query attention forward, flash style: one workgroup per (query block, head, sample); key blocks stream
// through workgroup memory with an online softmax. o_i = sum_j softmax_j(scale q_i.k_j) v_j over visible j; lse_i saved for backward.

struct Params { batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;          // [T, NH, DQK]
@group(0) @binding(1) var<storage, read> k: array<f32>;          // [T, NKV, DQK]
@group(0) @binding(2) var<storage, read> v: array<f32>;          // [T, NKV, DV]
@group(0) @binding(3) var<storage, read_write> o: array<f32>;    // [T, NH, DV]
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;  // [T, NH]
@group(0) @binding(5) var<uniform> p: Params;

override TX: u32 = 16;   // threads along keys and output dims
override TY: u32 = 16;   // threads along queries
override DQK: u32 = 128;
override DV: u32 = 128;
const R = 4u;            // a thread owns R query rows (ty + TY*i) x R keys (tx + TX*j) of a score block
const DC = 16u;          // head dims staged per step of Q.K^T
const KC = 8u;           // value rows staged per step of P.V
const MAXC = 16u;        // output dims per thread (tx + TX*j, j < NCV): DV <= MAXC * TX
const NEG = -1e30;       // masked score / "no key seen yet"
override BQ: u32 = R * TY;
override BK: u32 = R * TX;
override PS: u32 = R * TX + 1u;              // padded row stride of ps
override NCV: u32 = (DV + TX - 1u) / TX;

var<workgroup> qs: array<f32, DC * BQ>;      // [DC, BQ] query chunk, transposed
var<workgroup> ks: array<f32, DC * BK>;      // [DC, BK] key chunk, transposed
var<workgroup> ps: array<f32, BQ * PS>;      // [BQ, BK] scores, then probabilities
var<workgroup> vs: array<f32, KC * DV>;      // [KC, DV] value rows
var<workgroup> row_m: array<f32, BQ>;        // running max
var<workgroup> row_l: array<f32, BQ>;        // running sum of exp
var<workgroup> row_a: array<f32, BQ>;        // this block's rescale of the accumulator

fn visible(i: u32, j: u32) -> bool { return j <= i && i < p.seq && (p.window == 0u || i - j < p.window); }

// This thread's R x R dot products q_i.k_j of the block, DC dims at a time through workgroup memory.
fn block_scores(q0: u32, k0: u32, tok0: u32, h: u32, g: u32, tx: u32, ty: u32) -> array<f32, R * R> {
  let li = ty * TX + tx;
  let NT = TX * TY;
  var s = array<f32, R * R>();
  for (var d0 = 0u; d0 < DQK; d0 += DC) {
    for (var e = li; e < DC * BQ; e += NT) {
      let r = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (q0 + r < p.seq && d < DQK) { x = q[((tok0 + q0 + r) * p.n_heads + h) * DQK + d]; }
      qs[(e % DC) * BQ + r] = x;
    }
    for (var e = li; e < DC * BK; e += NT) {
      let c = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (k0 + c < p.seq && d < DQK) { x = k[((tok0 + k0 + c) * p.n_kv_heads + g) * DQK + d]; }
      ks[(e % DC) * BK + c] = x;
    }
    workgroupBarrier();
    for (var d = 0u; d < DC; d++) {
      var a = array<f32, R>();
      var b = array<f32, R>();
      for (var i = 0u; i < R; i++) { a[i] = qs[d * BQ + ty + TY * i]; b[i] = ks[d * BK + tx + TX * i]; }
      for (var i = 0u; i < R; i++) { for (var j = 0u; j < R; j++) { s[i * R + j] += a[i] * b[j]; } }
    }
    workgroupBarrier();
  }
  return s;
}

@compute @workgroup_size(TX, TY)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tx = lid.x;
  let ty = lid.y;
  let li = ty * TX + tx;
  let NT = TX * TY;
  let q0 = wid.x * BQ;
  let h = wid.y;
  let tok0 = wid.z * p.seq;
  let g = h / (p.n_heads / p.n_kv_heads);
  for (var r = li; r < BQ; r += NT) { row_m[r] = NEG; row_l[r] = 0.0; }
  var acc = array<f32, R * MAXC>();  // o rows ty + TY*i, dims tx + TX*j at [i * MAXC + j]

  let k_end = min(q0 + BQ, p.seq);
  var k_begin = 0u;
  if (p.window > 0u && q0 + 1u > p.window) { k_begin = q0 + 1u - p.window; }
  for (var k0 = k_begin / BK * BK; k0 < k_end; k0 += BK) {
    let s = block_scores(q0, k0, tok0, h, g, tx, ty);
    for (var i = 0u; i < R; i++) {
      for (var j = 0u; j < R; j++) {
        let r = ty + TY * i;
        let c = tx + TX * j;
        ps[r * PS + c] = select(NEG, s[i * R + j] * p.scale, visible(q0 + r, k0 + c));
      }
    }
    workgroupBarrier();

    // ---- online softmax, one thread per query row
    for (var r = li; r < BQ; r += NT) {
      let m_old = row_m[r];
      var m = m_old;
      for (var c = 0u; c < BK; c++) { m = max(m, ps[r * PS + c]); }
      var sum = 0.0;
      for (var c = 0u; c < BK; c++) {
        let sv = ps[r * PS + c];
        let e = select(0.0, exp(sv - m), sv > 0.5 * NEG);
        ps[r * PS + c] = e;
        sum += e;
      }
      let alpha = exp(m_old - m);
      row_m[r] = m;
      row_l[r] = row_l[r] * alpha + sum;
      row_a[r] = alpha;
    }
    workgroupBarrier();

    // ---- O = O * alpha + P V, KC value rows at a time
    for (var i = 0u; i < R; i++) {
      let al = row_a[ty + TY * i];
      for (var j = 0u; j < NCV; j++) { acc[i * MAXC + j] *= al; }
    }
    for (var c0 = 0u; c0 < BK; c0 += KC) {
      for (var e = li; e < KC * DV; e += NT) {
        let kk = e / DV;
        var x = 0.0;
        if (k0 + c0 + kk < p.seq) { x = v[((tok0 + k0 + c0 + kk) * p.n_kv_heads + g) * DV + e % DV]; }
        vs[e] = x;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KC; kk++) {
        for (var i = 0u; i < R; i++) {
          let pv = ps[(ty + TY * i) * PS + c0 + kk];
          for (var j = 0u; j < NCV; j++) {
            let d = tx + TX * j;
            if (d < DV) { acc[i * MAXC + j] += pv * vs[kk * DV + d]; }
          }
        }
      }
      workgroupBarrier();
    }
  }

  // ---- normalize and write o, lse
  for (var i = 0u; i < R; i++) {
    let r = ty + TY * i;
    if (q0 + r < p.seq) {
      let inv = 1.0 / row_l[r];
      for (var j = 0u; j < NCV; j++) {
        let d = tx + TX * j;
        if (d < DV) { o[((tok0 + q0 + r) * p.n_heads + h) * DV + d] = acc[i * MAXC + j] * inv; }
      }
    }
  }
  for (var r = li; r < BQ; r += NT) {
    if (q0 + r < p.seq) { lse[(tok0 + q0 + r) * p.n_heads + h] = row_m[r] + log(row_l[r]); }
  }
}
