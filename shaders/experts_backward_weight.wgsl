// Dense expert weight gradient (importance / reselection passes): out[e, n, c] (+)= sum over the rows r of expert e of
// left[r, n] * right[src(r), c], src(r) = rowPair[r] / K when gathering tokens (gate/up: dG^T·x) else r (down: dY^T·A).

struct Params { N: u32, C: u32, K: u32, gather: u32, accumulate: u32, E: u32 }

@group(0) @binding(0) var<storage, read> left: array<f32>;           // [R, N]
@group(0) @binding(1) var<storage, read> right: array<f32>;          // [T, C] (gather) or [R, C]
@group(0) @binding(2) var<storage, read> rowPair: array<u32>;        // [R]
@group(0) @binding(3) var<storage, read> offsets: array<u32>;        // [E+1]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // [E, N, C]
@group(0) @binding(5) var<uniform> p: Params;

override WX: u32 = 16;
override WY: u32 = 16;
override TK: u32 = 16;   // rows per step
const RM = 2u;
const RN = 4u;
override TM: u32 = WY * RM;
override TN: u32 = WX * RN;

var<workgroup> ls: array<f32, TK * TM>;   // [row][n]
var<workgroup> rs: array<f32, TK * TN>;   // [row][c]

@compute @workgroup_size(WX, WY)
fn backward_weight(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let e = wid.z;
  let n0 = wid.y * TM;
  let c0 = wid.x * TN;
  let N = p.N;
  let C = p.C;
  let rBegin = offsets[e];
  let rEnd = offsets[e + 1u];
  let li = lid.y * WX + lid.x;
  var acc: array<f32, RM * RN>;
  for (var q0 = rBegin; q0 < rEnd; q0 += TK) {
    for (var q = li; q < TK * TM; q += WX * WY) {
      let r = q0 + q / TM;
      let n = n0 + q % TM;
      var v = 0.0;
      if (r < rEnd && n < N) { v = left[r * N + n]; }
      ls[q] = v;
    }
    for (var q = li; q < TK * TN; q += WX * WY) {
      let r = q0 + q / TN;
      let c = c0 + q % TN;
      var v = 0.0;
      if (r < rEnd && c < C) {
        var src = r;
        if (p.gather != 0u) { src = rowPair[r] / p.K; }
        v = right[src * C + c];
      }
      rs[q] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      for (var i = 0u; i < RM; i++) {
        let a = ls[k * TM + lid.y * RM + i];
        for (var j = 0u; j < RN; j++) { acc[i * RN + j] += a * rs[k * TN + lid.x + j * WX]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let n = n0 + lid.y * RM + i;
    for (var j = 0u; j < RN; j++) {
      let c = c0 + lid.x + j * WX;
      if (n < N && c < C) {
        let at = (e * N + n) * C + c;
        if (p.accumulate != 0u) { out[at] += acc[i * RN + j]; } else { out[at] = acc[i * RN + j]; }
      }
    }
  }
}
