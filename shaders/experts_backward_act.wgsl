// Routed experts backward 2/3, grouped GEMM over expert-sorted rows: dA = dY·down_e, then through A = silu(G)*U:
// dG = dA * U * silu'(G), dU = dA * silu(G) (=). Workgroup = one row tile (TM rows, one expert) x TN columns of IE.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> dY: array<f32>;             // [R, H]
@group(0) @binding(1) var<storage, read> wDown: array<u32>;          // [E, H, IE] from downOff: f32 bits or bf16 pairs
@group(0) @binding(2) var<storage, read> G: array<f32>;              // [R, IE]
@group(0) @binding(3) var<storage, read> U: array<f32>;              // [R, IE]
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> dG: array<f32>;       // [R, IE]
@group(0) @binding(6) var<storage, read_write> dU: array<f32>;       // [R, IE]
@group(0) @binding(7) var<uniform> p: Params;

override W_BF16: bool = false;
override WX: u32 = 16;
override WY: u32 = 16;
override TK: u32 = 16;
const RM = 2u;
const RN = 4u;
override TM: u32 = WY * RM;
override TN: u32 = WX * RN;

var<workgroup> xs: array<f32, TM * TK>;   // [m][k]
var<workgroup> ws: array<f32, TK * TN>;   // [k][n]

fn downAt(i: u32) -> f32 {
  if (W_BF16) { let w = wDown[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u)); }
  return bitcast<f32>(wDown[i]);
}

@compute @workgroup_size(WX, WY)
fn backward_act(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
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
  for (var k0 = 0u; k0 < H; k0 += TK) {
    for (var q = li; q < TM * TK; q += WX * WY) {
      let m = q / TK;
      let k = k0 + q % TK;
      var v = 0.0;
      if (r0 + m < r1 && k < H) { v = dY[(r0 + m) * H + k]; }
      xs[q] = v;
    }
    for (var q = li; q < TK * TN; q += WX * WY) {
      let k = k0 + q / TN;
      let n = n0 + q % TN;
      var v = 0.0;
      if (n < IE && k < H) { v = downAt(p.downOff + (e * H + k) * IE + n); }
      ws[q] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      for (var i = 0u; i < RM; i++) {
        let a = xs[(lid.y * RM + i) * TK + k];
        for (var j = 0u; j < RN; j++) { acc[i * RN + j] += a * ws[k * TN + lid.x + j * WX]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = r0 + lid.y * RM + i;
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * WX;
      if (r < r1 && n < IE) {
        let g = G[r * IE + n];
        let sg = 1.0 / (1.0 + exp(-g));
        let da = acc[i * RN + j];
        dG[r * IE + n] = da * U[r * IE + n] * sg * (1.0 + g * (1.0 - sg));
        dU[r * IE + n] = da * g * sg;
      }
    }
  }
}
