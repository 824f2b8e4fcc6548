// The tiled GEMM of matmul.wgsl's launchers for every tiling but the plain 64 x 64 one (ops/matmul.ts, docs/gemm.md):
// compiled after matmul.wgsl (its bindings, load_a, load_b) and before matmul_plain.wgsl or matmul_sg.wgsl (the entry).
// TX x TY threads, each RM x RN outputs, BK reduction steps a stage; DB double-buffers the workgroup tiles (one barrier a
// stage); SG (a module compiled with `enable subgroups`) hands each thread its A fragment through subgroupShuffle.

override RM: u32 = 4;         // rows a thread owns (4 or 8): 4 consecutive rows at 4*(y + TY*u), u < RM/4
override RN: u32 = 4;         // columns a thread owns (4 or 8): 4 consecutive columns at 4*(x + TX*v), v < RN/4
override DB: bool = false;    // two tile buffers: stage k-slice t+1 (through registers) while computing slice t
override SG: bool = false;    // A fragments through subgroupShuffle (the module must define them: matmul_sg.wgsl)
override SG_STRICT: bool = false;   // tests: write nothing rather than fall back to staging A
override TBM = TY * RM;
override TBN = TX * RN;
override NBUF = select(1u, 2u, DB);
override PA = BK * TBM / (TX * TY);   // A values a thread stages per slice (ops/matmul.ts keeps it whole and <= 8)
override PB = BK * TBN / (TX * TY);

var<workgroup> Ta: array<vec4f, NBUF * BK * TBM / 4>;   // [buf][BK][TBM / 4], 4 consecutive rows per vec4
var<workgroup> Tb: array<vec4f, NBUF * BK * TBN / 4>;   // [buf][BK][TBN / 4], 4 consecutive columns per vec4

// Staging element l of a slice: neighbouring threads walk the dimension that is contiguous in memory.
fn a_at(l: u32) -> vec2u { return vec2u(select(l / BK, l % TBM, A_T), select(l % BK, l / TBM, A_T)); }   // (ii, rr)
fn b_at(l: u32) -> vec2u { return vec2u(select(l % TBN, l / BK, B_T), select(l / TBN, l % BK, B_T)); }   // (jj, rr)
fn put_a(buf: u32, l: u32, v: f32) { let at = a_at(l); Ta[(buf * BK + at.y) * (TBM / 4u) + at.x / 4u][at.x % 4u] = v; }
fn put_b(buf: u32, l: u32, v: f32) { let at = b_at(l); Tb[(buf * BK + at.y) * (TBN / 4u) + at.x / 4u][at.x % 4u] = v; }

/** The 4 rows 4*q..4*q+3 of the tile at reduction step r (A fragment of one thread). */
fn a_rows(i0: u32, q: u32, r: u32) -> vec4f {
  let i = i0 + 4u * q;
  return vec4f(load_a(i, r), load_a(i + 1u, r), load_a(i + 2u, r), load_a(i + 3u, r));
}

fn gemm(wid: vec3u, lid: vec3u, sg_lane: u32, sg_size: u32) {
  let tid = lid.y * TX + lid.x;
  let i0 = select(wid.y, wid.x, ROWS_FAST) * TBM;
  let j0 = select(wid.x, wid.y, ROWS_FAST) * TBN;
  // SG: lanes in runs of W = min(subgroup size, TX, BK) that share lid.y and count lid.x up from a multiple of W; each
  // lane loads the A fragments of reduction steps s, s + W, ... and the run shares them. Checked, not assumed: the
  // mapping of invocations to subgroups is the implementation's, and a workgroup where one run breaks it stages A.
  var use_sg = false;
  var w = 1u;
  var head = 0u;
  if (SG) {
    w = min(sg_size, min(TX, BK));
    let s = sg_lane % w;
    head = sg_lane - s;
    let run_row = sg_row_of(lid.y, head);
    let ok = w >= 4u && (BK / w) * (RM / 4u) <= 8u && (lid.x % w) == s && run_row == lid.y;
    // Tb (zeroed at launch, staged only after this) carries the flag: every lane that breaks the layout writes 1.
    if (!ok) { Tb[0].x = 1.0; }
    use_sg = workgroupUniformLoad(&Tb[0]).x == 0.0;
    if (SG_STRICT && !use_sg) { return; }   // tests: prove the subgroup path ran (outputs stay poisoned otherwise)
  }
  var acc: array<vec4f, 16>;   // (row 4*(lid.y + TY*u) + t, columns 4*(lid.x + TX*v)..) at (4u + t) * (RN/4) + v
  var pa: array<f32, 8>;       // DB: the next slice, held in registers while this one is computed
  var pb: array<f32, 8>;
  var af: array<vec4f, 8>;     // SG: this lane's A fragments, (step s + W*q, rows of u) at q * (RM/4) + u
  let nt = (p.k + BK - 1u) / BK;
  if (DB) {
    for (var l = 0u; l < PA; l++) { if (!use_sg) { let at = a_at(tid + l * TX * TY); put_a(0u, tid + l * TX * TY, load_a(i0 + at.x, at.y)); } }
    for (var l = 0u; l < PB; l++) { let at = b_at(tid + l * TX * TY); put_b(0u, tid + l * TX * TY, load_b(at.y, j0 + at.x)); }
    workgroupBarrier();
  }
  for (var t = 0u; t < nt; t++) {
    let r0 = t * BK;
    var buf = 0u;
    if (DB) {
      buf = t % 2u;
      if (t + 1u < nt) {   // prefetch slice t + 1
        for (var l = 0u; l < PA; l++) { if (!use_sg) { let at = a_at(tid + l * TX * TY); pa[l] = load_a(i0 + at.x, r0 + BK + at.y); } }
        for (var l = 0u; l < PB; l++) { let at = b_at(tid + l * TX * TY); pb[l] = load_b(r0 + BK + at.y, j0 + at.x); }
      }
    } else {
      for (var l = tid; l < BK * TBM; l += TX * TY) { if (!use_sg) { let at = a_at(l); put_a(0u, l, load_a(i0 + at.x, r0 + at.y)); } }
      for (var l = tid; l < BK * TBN; l += TX * TY) { let at = b_at(l); put_b(0u, l, load_b(r0 + at.y, j0 + at.x)); }
      workgroupBarrier();
    }
    if (use_sg) {
      let s = sg_lane % w;
      for (var q = 0u; q < BK / w; q++) {
        for (var u = 0u; u < RM / 4u; u++) { af[q * (RM / 4u) + u] = a_rows(i0, lid.y + TY * u, r0 + s + w * q); }
      }
    }
    for (var rr = 0u; rr < BK; rr++) {
      var av: array<vec4f, 2>;
      for (var u = 0u; u < RM / 4u; u++) {
        if (use_sg) { av[u] = sg_shuffle(af[(rr / w) * (RM / 4u) + u], head + rr % w); }
        else { av[u] = Ta[(buf * BK + rr) * (TBM / 4u) + lid.y + TY * u]; }
      }
      for (var v = 0u; v < RN / 4u; v++) {
        let bv = Tb[(buf * BK + rr) * (TBN / 4u) + lid.x + TX * v];
        for (var u = 0u; u < RM / 4u; u++) {
          let o = 4u * u * (RN / 4u) + v;
          acc[o] += av[u].x * bv;
          acc[o + RN / 4u] += av[u].y * bv;
          acc[o + 2u * (RN / 4u)] += av[u].z * bv;
          acc[o + 3u * (RN / 4u)] += av[u].w * bv;
        }
      }
    }
    if (DB) {
      if (t + 1u < nt) {
        for (var l = 0u; l < PA; l++) { if (!use_sg) { put_a(1u - buf, tid + l * TX * TY, pa[l]); } }
        for (var l = 0u; l < PB; l++) { put_b(1u - buf, tid + l * TX * TY, pb[l]); }
      }
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < RM / 4u; u++) {
    for (var t = 0u; t < 4u; t++) {
      let i = i0 + 4u * (lid.y + TY * u) + t;
      if (i >= p.m) { continue; }
      for (var v = 0u; v < RN / 4u; v++) {
        let vals = acc[(4u * u + t) * (RN / 4u) + v];
        for (var e = 0u; e < 4u; e++) {
          let j = j0 + 4u * (lid.x + TX * v) + e;
          if (j >= p.n) { continue; }
          var out = vals[e];
          if (p.has_bias != 0u) { out += bias[p.bias_off + j]; }
          let ci = p.c_off + i * p.ldc + j;
          if (p.accumulate != 0u) { out += c[ci]; }
          c[ci] = out;
        }
      }
    }
  }
}
