// Routed experts forward 1/3, grouped GEMM over expert-sorted rows: for row r of expert e (token t = rowPair[r] / K),
// G = x_t·gate_e^T, U = x_t·up_e^T, A = silu(G)*U. Workgroup = one row tile (TM rows, one expert) x TN columns of IE.

struct Params { H: u32, IE: u32, K: u32, gateOff: u32, upOff: u32, downOff: u32, T: u32, E: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;              // [T, H]
@group(0) @binding(1) var<storage, read> wGate: array<u32>;          // [E, IE, H] from gateOff: f32 bits or bf16 pairs
@group(0) @binding(2) var<storage, read> wUp: array<u32>;            // [E, IE, H] from upOff
@group(0) @binding(3) var<storage, read> rowPair: array<u32>;        // [R] pair t*K+k of each sorted row
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;        // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> G: array<f32>;        // [R, IE]
@group(0) @binding(6) var<storage, read_write> U: array<f32>;        // [R, IE]
@group(0) @binding(7) var<storage, read_write> A: array<f32>;        // [R, IE]
@group(0) @binding(8) var<uniform> p: Params;

override W_BF16: bool = false;
override WX: u32 = 16;   // threads along n; each owns RN columns strided by WX
override WY: u32 = 16;   // threads along m; each owns RM consecutive rows
override TK: u32 = 16;   // reduction tile
const RM = 2u;
const RN = 4u;
override TM: u32 = WY * RM;
override TN: u32 = WX * RN;

var<workgroup> xs: array<f32, TM * TK>;   // [m][k]
var<workgroup> gs: array<f32, TK * TN>;   // [k][n]
var<workgroup> us: array<f32, TK * TN>;   // [k][n]

fn unpack(word: u32, i: u32) -> f32 {
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
fn gateAt(i: u32) -> f32 { if (W_BF16) { return unpack(wGate[i >> 1u], i); } return bitcast<f32>(wGate[i]); }
fn upAt(i: u32) -> f32 { if (W_BF16) { return unpack(wUp[i >> 1u], i); } return bitcast<f32>(wUp[i]); }

@compute @workgroup_size(WX, WY)
fn gate_up(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  if (tile.x == 0xffffffffu) { return; }
  let e = tile.x;
  let r0 = tile.y;
  let r1 = tile.z;
  let n0 = wid.x * TN;
  let H = p.H;
  let IE = p.IE;
  let li = lid.y * WX + lid.x;
  var accG: array<f32, RM * RN>;
  var accU: array<f32, RM * RN>;
  for (var k0 = 0u; k0 < H; k0 += TK) {
    for (var q = li; q < TM * TK; q += WX * WY) {
      let m = q / TK;
      let k = k0 + q % TK;
      var v = 0.0;
      if (r0 + m < r1 && k < H) { v = x[(rowPair[r0 + m] / p.K) * H + k]; }
      xs[q] = v;
    }
    for (var q = li; q < TN * TK; q += WX * WY) {
      let n = n0 + q / TK;
      let k = k0 + q % TK;
      var gv = 0.0;
      var uv = 0.0;
      if (n < IE && k < H) {
        let row = (e * IE + n) * H + k;
        gv = gateAt(p.gateOff + row);
        uv = upAt(p.upOff + row);
      }
      gs[(q % TK) * TN + q / TK] = gv;
      us[(q % TK) * TN + q / TK] = uv;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      for (var i = 0u; i < RM; i++) {
        let a = xs[(lid.y * RM + i) * TK + k];
        for (var j = 0u; j < RN; j++) {
          accG[i * RN + j] += a * gs[k * TN + lid.x + j * WX];
          accU[i * RN + j] += a * us[k * TN + lid.x + j * WX];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < RM; i++) {
    let r = r0 + lid.y * RM + i;
    for (var j = 0u; j < RN; j++) {
      let n = n0 + lid.x + j * WX;
      if (r < r1 && n < IE) {
        let g = accG[i * RN + j];
        let u = accU[i * RN + j];
        G[r * IE + n] = g;
        U[r * IE + n] = u;
        A[r * IE + n] = g / (1.0 + exp(-g)) * u;
      }
    }
  }
}
