// 4-bit routed experts, forward 1/2 sparse correction (after experts.wgsl on the 4-bit W0): for row r of expert e
// (token t = rowPair[r] / K) and column c, G[r, c] += Σ x[t, h]·Δ over the gate row (e, c)'s table entries, U likewise
// over the up row (e, c)'s, then A = silu(G)·U again. Workgroup = one row tile x WG columns; thread = one column, the
// tile's rows; a column with no entries is left as it is (each output element has one owner).

struct Params { H: u32, IE: u32, K: u32, E: u32, ptr: u32, col: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // rowptr [2·E·IE + 1] at ptr (gate rows, then up), col (low 15 bits) [nnz] at col
@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [nnz] (experts_q4_delta.wgsl)
@group(0) @binding(2) var<storage, read> x: array<f32>;         // [T, H]
@group(0) @binding(3) var<storage, read> rowPair: array<u32>;   // [R] pair t*K+k of each sorted row
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;   // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(5) var<storage, read_write> G: array<f32>;   // [R, IE]
@group(0) @binding(6) var<storage, read_write> U: array<f32>;   // [R, IE]
@group(0) @binding(7) var<storage, read_write> A: array<f32>;   // [R, IE]
@group(0) @binding(8) var<uniform> p: Params;

override WG: u32 = 64u;
const TM = 32u;   // rows per tile (EXPERT_TILE_M)

@compute @workgroup_size(WG)
fn gate_up(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  let c = wid.x * WG + lid.x;
  if (tile.x >= p.E || c >= p.IE) { return; }
  let kg = tile.x * p.IE + c;
  let ku = (p.E + tile.x) * p.IE + c;
  let g0 = tab[p.ptr + kg]; let g1 = tab[p.ptr + kg + 1u];
  let u0 = tab[p.ptr + ku]; let u1 = tab[p.ptr + ku + 1u];
  if (g0 == g1 && u0 == u1) { return; }
  let nr = tile.z - tile.y;
  var dg: array<f32, TM>;
  var du: array<f32, TM>;
  for (var j = g0; j < g1; j++) {
    let h = tab[p.col + j] & 0x7fffu;
    let d = delta[j];
    for (var m = 0u; m < nr; m++) { dg[m] += x[(rowPair[tile.y + m] / p.K) * p.H + h] * d; }
  }
  for (var j = u0; j < u1; j++) {
    let h = tab[p.col + j] & 0x7fffu;
    let d = delta[j];
    for (var m = 0u; m < nr; m++) { du[m] += x[(rowPair[tile.y + m] / p.K) * p.H + h] * d; }
  }
  for (var m = 0u; m < nr; m++) {
    let at = (tile.y + m) * p.IE + c;
    let g = G[at] + dg[m];
    let u = U[at] + du[m];
    G[at] = g;
    U[at] = u;
    A[at] = g / (1.0 + exp(-g)) * u;
  }
}
