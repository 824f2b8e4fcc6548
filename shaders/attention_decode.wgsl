// Attention of T new queries over a KV cache (generation): query i sits at position pos0 + i and sees cached keys
// j <= pos0 + i (and pos0 + i - j < window when set). One workgroup per (query, head); keys stream through in chunks of
// WG with an online softmax. o_i = sum_j softmax_j(scale q_i.k_j) v_j.

struct Params { tokens: u32, pos0: u32, n_heads: u32, n_kv_heads: u32, scale: f32, window: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;          // [T, NH, DQK]
@group(0) @binding(1) var<storage, read> kc: array<f32>;         // [P, NKV, DQK]  cached keys, positions 0..pos0+T-1 written
@group(0) @binding(2) var<storage, read> vc: array<f32>;         // [P, NKV, DV]
@group(0) @binding(3) var<storage, read_write> o: array<f32>;    // [T, NH, DV]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;
override DQK: u32 = 128;
override DV: u32 = 128;
override NCV: u32 = (DV + WG - 1u) / WG;   // output dims per thread (t + WG*c)
const MAXC = 8u;
const NEG = -1e30;

var<workgroup> qs: array<f32, DQK>;
var<workgroup> ps: array<f32, WG>;       // this chunk's probabilities
var<workgroup> red: array<f32, WG>;      // reduction scratch

// Workgroup-wide max (op 0) or sum (op 1) of x; every thread gets the result.
fn reduce(t: u32, x: f32, op: u32) -> f32 {
  red[t] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = select(red[t] + red[t + s], max(red[t], red[t + s]), op == 0u); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn decode(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let i = wid.x;
  let h = wid.y;
  let g = h / (p.n_heads / p.n_kv_heads);
  let pos = p.pos0 + i;
  for (var d = t; d < DQK; d += WG) { qs[d] = q[(i * p.n_heads + h) * DQK + d]; }
  workgroupBarrier();
  var k_begin = 0u;
  if (p.window > 0u && pos + 1u > p.window) { k_begin = pos + 1u - p.window; }
  var m = NEG;
  var l = 0.0;
  var acc = array<f32, MAXC>();
  for (var k0 = k_begin; k0 <= pos; k0 += WG) {
    let j = k0 + t;
    var s = NEG;
    if (j <= pos) {
      var dot = 0.0;
      for (var d = 0u; d < DQK; d++) { dot += qs[d] * kc[(j * p.n_kv_heads + g) * DQK + d]; }
      s = dot * p.scale;
    }
    let m_new = max(m, reduce(t, s, 0u));
    let e = select(0.0, exp(s - m_new), j <= pos);
    ps[t] = e;
    let alpha = exp(m - m_new);
    l = l * alpha + reduce(t, e, 1u);
    m = m_new;
    let n = min(WG, pos + 1u - k0);
    for (var c = 0u; c < NCV; c++) {
      let d = t + WG * c;
      var a = acc[c] * alpha;
      if (d < DV) { for (var kk = 0u; kk < n; kk++) { a += ps[kk] * vc[((k0 + kk) * p.n_kv_heads + g) * DV + d]; } }
      acc[c] = a;
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < NCV; c++) {
    let d = t + WG * c;
    if (d < DV) { o[(i * p.n_heads + h) * DV + d] = acc[c] / l; }
  }
}
