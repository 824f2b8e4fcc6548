// Routed experts forward 2/3, grouped GEMM over expert-sorted rows: Y[r] = A[r]·down_e^T for the rows r of expert e.
// Workgroup = one row tile (TM rows, one expert) x TN columns of H.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> A: array<f32>;              // [R, IE]
@group(0) @binding(1) var<storage, read> wDown: array<u32>;          // [E, H, IE] from downOff: f32 bits or bf16 pairs
@group(0) @binding(2) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;        // [R, H]
@group(0) @binding(4) var<uniform> p: Params;

override W_BF16: bool = false;
override WX: u32 = 16;
override WY: u32 = 16;
override TK: u32 = 16;
const RM = 2u;
const RN = 4u;
override TM: u32 = WY * RM;
override TN: u32 = WX * RN;

var<workgroup> as_: array<f32, TM * TK>;  // [m][k]
var<workgroup> ws: array<f32, TK * TN>;   // [k][n]

fn downAt(i: u32) -> f32 {
  if (W_BF16) { let w = wDown[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u)); }
  return bitcast<f32>(wDown[i]);
}

@compute @workgroup_size(WX, WY)
fn down(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  if (tile.x == 0xffffffffu) { return; }
  let e = tile.x;
  let r0 = tile.y;
  let r1 = tile.z;
  let n0 = wid.x * TN;
  let H = p.H;
  let IE = p.IE;
  let li = lid.y * WX + lid.x;
  var acc: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < IE; k0 += TK) {
    for (var q = li; q < TM * TK; q += WX * WY) {
      let m = q / TK;
      let k = k0 + q % TK;
      var v = 0.0;
      if (r0 + m < r1 && k < IE) { v = A[(r0 + m) * IE + k]; }
      as_[q] = v;
    }
    for (var q = li; q < TN * TK; q += WX * WY) {
      let n = n0 + q / TK;
      let k = k0 + q % TK;
      var v = 0.0;
      if (n < H && k < IE) { v = downAt(p.downOff + (e * H + n) * IE + k); }
      ws[(q % TK) * TN + q / TK] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      for (var i = 0u; i < RM; i++) {
        let a = as_[(lid.y * RM + i) * TK + k];
        for (var j = 0u; j < RN; j++) { acc[i * RN + j] += a * ws[k * TN + lid.x + j * WX]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = r0 + lid.y * RM + i;
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * WX;
      if (r < r1 && n < H) { Y[r * H + n] = acc[i * RN + j]; }
    }
  }
}
