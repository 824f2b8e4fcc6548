// Dense expert weight gradient (importance / reselection passes): out[e, n, c] (+)= sum over the rows r of expert e of
// left[r, n] * right[src(r), c], src(r) = rowPair[r] / K when gathering tokens (gate/up: dG^T·x) else r (down: dY^T·A).
// Workgroup = 64 n x TC c of one expert; thread = 8 n x 8 c (runs of 4); BK rows staged per barrier.

struct Params { N: u32, C: u32, K: u32, gather: u32, accumulate: u32, E: u32, e0: u32 }   // accumulate: 0 =, 1 +=, 2 += |.|

@group(0) @binding(0) var<storage, read> left: array<f32>;           // [R, N]
@group(0) @binding(1) var<storage, read> right: array<f32>;          // [T, C] (gather) or [R, C]
@group(0) @binding(2) var<storage, read> rowPair: array<u32>;        // [R]
@group(0) @binding(3) var<storage, read> offsets: array<u32>;        // [E+1]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // [E, N, C]; or of experts e0.. only (slot e - e0)
@group(0) @binding(5) var<uniform> p: Params;

override NX: u32 = 16;        // threads along c; thread x owns c = 4*(x + NX*b) + j (b < 2, j < 4)
override BK: u32 = 16;        // rows per barrier
const NY = 8u;                // threads along n; thread y owns n = 4*(y + 8*b) + i
const LQ = 16u;               // vec4s of n per staged row (64 n)
override RQ: u32 = 2u * NX;   // vec4s of c per staged row (TC = 4*RQ)

var<workgroup> ls: array<vec4f, BK * LQ>;   // [row][n/4]
var<workgroup> rs: array<vec4f, BK * RQ>;   // [row][c/4]

// 4 values from element i on (columns c..c+3), the ones at c + j >= cEnd zero.
fn left4(i: u32, c: u32, cEnd: u32) -> vec4f {
  if (c + 4u <= cEnd) { return vec4f(left[i], left[i + 1u], left[i + 2u], left[i + 3u]); }
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) { if (c + j < cEnd) { v[j] = left[i + j]; } }
  return v;
}
fn right4(i: u32, c: u32, cEnd: u32) -> vec4f {
  if (c + 4u <= cEnd) { return vec4f(right[i], right[i + 1u], right[i + 2u], right[i + 3u]); }
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) { if (c + j < cEnd) { v[j] = right[i + j]; } }
  return v;
}

fn put(e: u32, n: u32, c: u32, v: vec4f) {
  if (n >= p.N) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (c + j < p.C) {
      let at = (e * p.N + n) * p.C + c + j;
      if (p.accumulate == 2u) { out[at] += abs(v[j]); } else if (p.accumulate != 0u) { out[at] += v[j]; } else { out[at] = v[j]; }
    }
  }
}

@compute @workgroup_size(NX, NY)
fn backward_weight(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let e = wid.z + p.e0;   // workgroups run over experts e0.., out holds slot wid.z
  let n0 = wid.y * 4u * LQ;
  let c0 = wid.x * 4u * RQ;
  let N = p.N;
  let C = p.C;
  let rBegin = offsets[e];
  let rEnd = offsets[e + 1u];
  if (rBegin == rEnd && p.accumulate != 0u) { return; }
  let li = lid.y * NX + lid.x;
  var acc: array<vec4f, 16>;   // [n run b][i] x c run 0 at 2*(4b + i), c run 1 at 2*(4b + i) + 1
  for (var q0 = rBegin; q0 < rEnd; q0 += BK) {
    for (var q = li; q < BK * LQ; q += NX * NY) {
      let r = q0 + q / LQ;
      let n = n0 + 4u * (q % LQ);
      var v = vec4f(0.0);
      if (r < rEnd) { v = left4(r * N + n, n, N); }
      ls[q] = v;
    }
    for (var q = li; q < BK * RQ; q += NX * NY) {
      let r = q0 + q / RQ;
      let c = c0 + 4u * (q % RQ);
      var v = vec4f(0.0);
      if (r < rEnd) {
        var src = r;
        if (p.gather != 0u) { src = rowPair[r] / p.K; }
        v = right4(src * C + c, c, C);
      }
      rs[q] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let a0 = ls[k * LQ + lid.y];
      let a1 = ls[k * LQ + lid.y + NY];
      let b0 = rs[k * RQ + lid.x];
      let b1 = rs[k * RQ + lid.x + NX];
      acc[0] += a0.x * b0; acc[1] += a0.x * b1; acc[2] += a0.y * b0; acc[3] += a0.y * b1;
      acc[4] += a0.z * b0; acc[5] += a0.z * b1; acc[6] += a0.w * b0; acc[7] += a0.w * b1;
      acc[8] += a1.x * b0; acc[9] += a1.x * b1; acc[10] += a1.y * b0; acc[11] += a1.y * b1;
      acc[12] += a1.z * b0; acc[13] += a1.z * b1; acc[14] += a1.w * b0; acc[15] += a1.w * b1;
    }
    workgroupBarrier();
  }
  let nA = n0 + 4u * lid.y;
  let nB = nA + 4u * NY;
  let cA = c0 + 4u * lid.x;
  let cB = cA + 4u * NX;
  put(wid.z, nA, cA, acc[0]); put(wid.z, nA, cB, acc[1]);
  put(wid.z, nA + 1u, cA, acc[2]); put(wid.z, nA + 1u, cB, acc[3]);
  put(wid.z, nA + 2u, cA, acc[4]); put(wid.z, nA + 2u, cB, acc[5]);
  put(wid.z, nA + 3u, cA, acc[6]); put(wid.z, nA + 3u, cB, acc[7]);
  put(wid.z, nB, cA, acc[8]); put(wid.z, nB, cB, acc[9]);
  put(wid.z, nB + 1u, cA, acc[10]); put(wid.z, nB + 1u, cB, acc[11]);
  put(wid.z, nB + 2u, cA, acc[12]); put(wid.z, nB + 2u, cB, acc[13]);
  put(wid.z, nB + 3u, cA, acc[14]); put(wid.z, nB + 3u, cB, acc[15]);
}
