// 4-bit routed experts, backward 2/2 sparse correction (after experts_backward_input.wgsl on the 4-bit W0):
// dXr[r, c] += Σ dG[r, i]·Δ over the gate entries of column c of expert e + Σ dU[r, i]·Δ over the up entries (the
// transposed table). Thread = one column of H.

struct Params { H: u32, IE: u32, K: u32, E: u32, ptr: u32, col: u32, pos: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // rowptr [2·E·H + 1] at ptr (gate, then up), col (i: high 16 bits) at col, pos at pos
@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [nnz] in the forward table's order
@group(0) @binding(2) var<storage, read> dG: array<f32>;        // [R, IE]
@group(0) @binding(3) var<storage, read> dU: array<f32>;        // [R, IE]
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;   // [maxTiles]
@group(0) @binding(5) var<storage, read_write> dXr: array<f32>; // [R, H]
@group(0) @binding(6) var<uniform> p: Params;

override WG: u32 = 64u;
const TM = 32u;

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  let c = wid.x * WG + lid.x;
  if (tile.x >= p.E || c >= p.H) { return; }
  let kg = tile.x * p.H + c;
  let ku = (p.E + tile.x) * p.H + c;
  let g0 = tab[p.ptr + kg]; let g1 = tab[p.ptr + kg + 1u];
  let u0 = tab[p.ptr + ku]; let u1 = tab[p.ptr + ku + 1u];
  if (g0 == g1 && u0 == u1) { return; }
  let nr = tile.z - tile.y;
  var acc: array<f32, TM>;
  for (var j = g0; j < g1; j++) {
    let i = tab[p.col + j] >> 16u;
    let d = delta[tab[p.pos + j]];
    for (var m = 0u; m < nr; m++) { acc[m] += dG[(tile.y + m) * p.IE + i] * d; }
  }
  for (var j = u0; j < u1; j++) {
    let i = tab[p.col + j] >> 16u;
    let d = delta[tab[p.pos + j]];
    for (var m = 0u; m < nr; m++) { acc[m] += dU[(tile.y + m) * p.IE + i] * d; }
  }
  for (var m = 0u; m < nr; m++) { dXr[(tile.y + m) * p.H + c] += acc[m]; }
}
