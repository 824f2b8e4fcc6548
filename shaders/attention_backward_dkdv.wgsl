// Attention backward, key side: one workgroup per (key block, query head, sample) loops over the query blocks that see its
// keys: dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i dS_ij q_i (assigned, no atomics). Outputs are per query head
// [T, NH, D]: with GQA (NH > NKV) they are partials that attention_backward_dkdv_sum.wgsl sums over each kv head's
// query heads in head order; without it (NH = NKV) they are dk and dv themselves.

struct Params { batch: u32, seq: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;          // [T, NH, DQK]
@group(0) @binding(1) var<storage, read> k: array<f32>;          // [T, NKV, DQK]
@group(0) @binding(2) var<storage, read> v: array<f32>;          // [T, NKV, DV]
@group(0) @binding(3) var<storage, read> dout: array<f32>;       // [T, NH, DV]
@group(0) @binding(4) var<storage, read> lse: array<f32>;        // [T, NH]
@group(0) @binding(5) var<storage, read> delta: array<f32>;      // [T, NH]
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;   // [T, NH, DQK]  (partials of head h)
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;   // [T, NH, DV]
@group(0) @binding(8) var<uniform> p: Params;

override TX: u32 = 16;   // threads along queries and dk/dv dims
override TY: u32 = 16;   // threads along keys
override DQK: u32 = 128;
override DV: u32 = 128;
const R = 4u;            // a thread owns R keys (ty + TY*i) x R queries (tx + TX*j) of a transposed score block
const DC = 16u;          // head dims staged per step of K.Q^T and V.dO^T
const QC = 8u;           // query rows staged per step of P^T.dO and dS^T.Q
const MAXC = 16u;        // dk/dv dims per thread: DQK, DV <= MAXC * TX
override BK: u32 = R * TY;
override BQ: u32 = R * TX;
override PS: u32 = R * TX + 1u;
override DMAX: u32 = max(DQK, DV);
override NCQ: u32 = (DQK + TX - 1u) / TX;
override NCV: u32 = (DV + TX - 1u) / TX;

var<workgroup> as_: array<f32, DC * BK>;     // [DC, BK] key-side chunk (k or v), transposed
var<workgroup> bs: array<f32, DC * BQ>;      // [DC, BQ] query-side chunk (q or dO), transposed
var<workgroup> ps: array<f32, BK * PS>;      // [BK, BQ] P^T, then dS^T
var<workgroup> qrows: array<f32, QC * DMAX>; // [QC, DV or DQK] dO or q rows

fn visible(i: u32, j: u32) -> bool { return j <= i && i < p.seq && (p.window == 0u || i - j < p.window); }

// This thread's R x R products of the block: key-side rows (k, or v when `grad`) . query-side rows (q, or dO), DC dims at a time.
fn block_products(grad: bool, k0: u32, q0: u32, tok0: u32, h: u32, g: u32, tx: u32, ty: u32) -> array<f32, R * R> {
  let li = ty * TX + tx;
  let NT = TX * TY;
  let D = select(DQK, DV, grad);
  var s = array<f32, R * R>();
  for (var d0 = 0u; d0 < D; d0 += DC) {
    for (var e = li; e < DC * BK; e += NT) {
      let r = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (k0 + r < p.seq && d < D) {
        let row = (tok0 + k0 + r) * p.n_kv_heads + g;
        if (grad) { x = v[row * DV + d]; } else { x = k[row * DQK + d]; }
      }
      as_[(e % DC) * BK + r] = x;
    }
    for (var e = li; e < DC * BQ; e += NT) {
      let c = e / DC;
      let d = d0 + e % DC;
      var x = 0.0;
      if (q0 + c < p.seq && d < D) {
        let row = (tok0 + q0 + c) * p.n_heads + h;
        if (grad) { x = dout[row * DV + d]; } else { x = q[row * DQK + d]; }
      }
      bs[(e % DC) * BQ + c] = x;
    }
    workgroupBarrier();
    for (var d = 0u; d < DC; d++) {
      var a = array<f32, R>();
      var b = array<f32, R>();
      for (var i = 0u; i < R; i++) { a[i] = as_[d * BK + ty + TY * i]; b[i] = bs[d * BQ + tx + TX * i]; }
      for (var i = 0u; i < R; i++) { for (var j = 0u; j < R; j++) { s[i * R + j] += a[i] * b[j]; } }
    }
    workgroupBarrier();
  }
  return s;
}

// Stage QC query rows from q0 + c0 (dO when `grad`, else q) into qrows with row stride D.
fn stage_rows(grad: bool, q0: u32, c0: u32, tok0: u32, h: u32, li: u32) {
  let D = select(DQK, DV, grad);
  for (var e = li; e < QC * D; e += TX * TY) {
    let qq = q0 + c0 + e / D;
    var x = 0.0;
    if (qq < p.seq) {
      let row = (tok0 + qq) * p.n_heads + h;
      if (grad) { x = dout[row * DV + e % D]; } else { x = q[row * DQK + e % D]; }
    }
    qrows[e] = x;
  }
}

@compute @workgroup_size(TX, TY)
fn backward_dkdv(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tx = lid.x;
  let ty = lid.y;
  let li = ty * TX + tx;
  let k0 = wid.x * BK;
  let h = wid.y;
  let g = h / (p.n_heads / p.n_kv_heads);
  let tok0 = wid.z * p.seq;
  let NH = p.n_heads;
  var acc_k = array<f32, R * MAXC>();  // dk rows ty + TY*i, dims tx + TX*j at [i * MAXC + j]
  var acc_v = array<f32, R * MAXC>();

  let k_last = min(k0 + BK, p.seq) - 1u;
  var q_end = p.seq;
  if (p.window > 0u) { q_end = min(p.seq, k_last + p.window); }
  for (var q0 = k0 / BQ * BQ; q0 < q_end; q0 += BQ) {
    // ---- P^T and dS^T for this block
    let st = block_products(false, k0, q0, tok0, h, g, tx, ty);
    let dpt = block_products(true, k0, q0, tok0, h, g, tx, ty);
    var pt = array<f32, R * R>();
    var dst = array<f32, R * R>();
    for (var j = 0u; j < R; j++) {
      let qi = q0 + tx + TX * j;
      var l = 0.0;
      var dl = 0.0;
      if (qi < p.seq) { l = lse[(tok0 + qi) * NH + h]; dl = delta[(tok0 + qi) * NH + h]; }
      for (var i = 0u; i < R; i++) {
        let pij = select(0.0, exp(st[i * R + j] * p.scale - l), visible(qi, k0 + ty + TY * i));
        pt[i * R + j] = pij;
        dst[i * R + j] = pij * (dpt[i * R + j] - dl);
      }
    }
    for (var i = 0u; i < R; i++) { for (var j = 0u; j < R; j++) { ps[(ty + TY * i) * PS + tx + TX * j] = pt[i * R + j]; } }
    workgroupBarrier();

    // ---- dv += P^T dO
    for (var c0 = 0u; c0 < BQ; c0 += QC) {
      stage_rows(true, q0, c0, tok0, h, li);
      workgroupBarrier();
      for (var qq = 0u; qq < QC; qq++) {
        for (var i = 0u; i < R; i++) {
          let pv = ps[(ty + TY * i) * PS + c0 + qq];
          for (var j = 0u; j < NCV; j++) {
            let d = tx + TX * j;
            if (d < DV) { acc_v[i * MAXC + j] += pv * qrows[qq * DV + d]; }
          }
        }
      }
      workgroupBarrier();
    }

    // ---- dk += dS^T Q
    for (var i = 0u; i < R; i++) { for (var j = 0u; j < R; j++) { ps[(ty + TY * i) * PS + tx + TX * j] = dst[i * R + j]; } }
    workgroupBarrier();
    for (var c0 = 0u; c0 < BQ; c0 += QC) {
      stage_rows(false, q0, c0, tok0, h, li);
      workgroupBarrier();
      for (var qq = 0u; qq < QC; qq++) {
        for (var i = 0u; i < R; i++) {
          let ds = ps[(ty + TY * i) * PS + c0 + qq];
          for (var j = 0u; j < NCQ; j++) {
            let d = tx + TX * j;
            if (d < DQK) { acc_k[i * MAXC + j] += ds * qrows[qq * DQK + d]; }
          }
        }
      }
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < R; i++) {
    let kj = k0 + ty + TY * i;
    if (kj < p.seq) {
      let row = (tok0 + kj) * NH + h;
      for (var j = 0u; j < NCQ; j++) {
        let d = tx + TX * j;
        if (d < DQK) { dk[row * DQK + d] = acc_k[i * MAXC + j] * p.scale; }
      }
      for (var j = 0u; j < NCV; j++) {
        let d = tx + TX * j;
        if (d < DV) { dv[row * DV + d] = acc_v[i * MAXC + j]; }
      }
    }
  }
}
