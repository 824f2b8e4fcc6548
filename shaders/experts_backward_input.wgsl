// Routed experts backward 3/3, grouped GEMM over expert-sorted rows: dXr = dG·gate_e + dU·up_e [R, H] (=), which
// experts_combine then gathers per token into dx. Workgroup = one row tile (TM rows, one expert) x TN columns of H.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> dG: array<f32>;             // [R, IE]
@group(0) @binding(1) var<storage, read> dU: array<f32>;             // [R, IE]
@group(0) @binding(2) var<storage, read> wGate: array<u32>;          // [E, IE, H] from gateOff: f32 bits or bf16 pairs
@group(0) @binding(3) var<storage, read> wUp: array<u32>;            // [E, IE, H] from upOff
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> dXr: array<f32>;      // [R, H]
@group(0) @binding(6) var<uniform> p: Params;

override W_BF16: bool = false;
override WX: u32 = 16;
override WY: u32 = 16;
override TK: u32 = 16;
const RM = 2u;
const RN = 4u;
override TM: u32 = WY * RM;
override TN: u32 = WX * RN;

var<workgroup> gxs: array<f32, TM * TK>;  // dG [m][k]
var<workgroup> uxs: array<f32, TM * TK>;  // dU [m][k]
var<workgroup> gws: array<f32, TK * TN>;  // gate [k][n]
var<workgroup> uws: array<f32, TK * TN>;  // up [k][n]

fn unpack(word: u32, i: u32) -> f32 {
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
fn gateAt(i: u32) -> f32 { if (W_BF16) { return unpack(wGate[i >> 1u], i); } return bitcast<f32>(wGate[i]); }
fn upAt(i: u32) -> f32 { if (W_BF16) { return unpack(wUp[i >> 1u], i); } return bitcast<f32>(wUp[i]); }

@compute @workgroup_size(WX, WY)
fn backward_input(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
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
      var gv = 0.0;
      var uv = 0.0;
      if (r0 + m < r1 && k < IE) {
        gv = dG[(r0 + m) * IE + k];
        uv = dU[(r0 + m) * IE + k];
      }
      gxs[q] = gv;
      uxs[q] = uv;
    }
    for (var q = li; q < TK * TN; q += WX * WY) {
      let k = k0 + q / TN;
      let n = n0 + q % TN;
      var gv = 0.0;
      var uv = 0.0;
      if (n < H && k < IE) {
        let at = (e * IE + k) * H + n;
        gv = gateAt(p.gateOff + at);
        uv = upAt(p.upOff + at);
      }
      gws[q] = gv;
      uws[q] = uv;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      for (var i = 0u; i < RM; i++) {
        let ag = gxs[(lid.y * RM + i) * TK + k];
        let au = uxs[(lid.y * RM + i) * TK + k];
        for (var j = 0u; j < RN; j++) {
          let n = k * TN + lid.x + j * WX;
          acc[i * RN + j] += ag * gws[n] + au * uws[n];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = r0 + lid.y * RM + i;
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * WX;
      if (r < r1 && n < H) { dXr[r * H + n] = acc[i * RN + j]; }
    }
  }
}
