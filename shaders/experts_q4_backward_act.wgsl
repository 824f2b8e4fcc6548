// 4-bit routed experts, backward 1/2 sparse correction (after experts_backward_act.wgsl on the 4-bit W0): the dA
// correction dA'[r, c] = Σ dY[r, h]·Δ over the down entries of column c of expert e (the transposed table), taken
// through A = silu(G)·U (linear in dA): dG += dA'·U·silu'(G), dU += dA'·silu(G). Thread = one column of IE.

struct Params { H: u32, IE: u32, K: u32, E: u32, ptr: u32, col: u32, pos: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // rowptr [E·IE + 1] at ptr, col (h: high 16 bits) [nnz] at col, pos [nnz] at pos
@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [nnz] in the forward table's order (pos maps to it)
@group(0) @binding(2) var<storage, read> dY: array<f32>;        // [R, H]
@group(0) @binding(3) var<storage, read> G: array<f32>;         // [R, IE]
@group(0) @binding(4) var<storage, read> U: array<f32>;         // [R, IE]
@group(0) @binding(5) var<storage, read> tiles: array<vec4u>;   // [maxTiles]
@group(0) @binding(6) var<storage, read_write> dG: array<f32>;  // [R, IE]
@group(0) @binding(7) var<storage, read_write> dU: array<f32>;  // [R, IE]
@group(0) @binding(8) var<uniform> p: Params;

override WG: u32 = 64u;
const TM = 32u;

@compute @workgroup_size(WG)
fn backward_act(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  let c = wid.x * WG + lid.x;
  if (tile.x >= p.E || c >= p.IE) { return; }
  let k = tile.x * p.IE + c;
  let j0 = tab[p.ptr + k]; let j1 = tab[p.ptr + k + 1u];
  if (j0 == j1) { return; }
  let nr = tile.z - tile.y;
  var acc: array<f32, TM>;
  for (var j = j0; j < j1; j++) {
    let h = tab[p.col + j] >> 16u;
    let d = delta[tab[p.pos + j]];
    for (var m = 0u; m < nr; m++) { acc[m] += dY[(tile.y + m) * p.H + h] * d; }
  }
  for (var m = 0u; m < nr; m++) {
    let at = (tile.y + m) * p.IE + c;
    let g = G[at];
    let sg = 1.0 / (1.0 + exp(-g));
    dG[at] += acc[m] * U[at] * sg * (1.0 + g * (1.0 - sg));
    dU[at] += acc[m] * g * sg;
  }
}
