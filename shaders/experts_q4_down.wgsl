// 4-bit routed experts, forward 2/2 sparse correction (after experts_down.wgsl on the 4-bit W0): Y[r, c] += Σ A[r, i]·Δ
// over the down row (e, c)'s table entries. Workgroup = one row tile x WG columns of H; thread = one column.

struct Params { H: u32, IE: u32, K: u32, E: u32, ptr: u32, col: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> tab: array<u32>;       // rowptr [E·H + 1] at ptr, col (low 15 bits) [nnz] at col
@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [nnz]
@group(0) @binding(2) var<storage, read> A: array<f32>;         // [R, IE]
@group(0) @binding(3) var<storage, read> tiles: array<vec4u>;   // [maxTiles]
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;   // [R, H]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64u;
const TM = 32u;

@compute @workgroup_size(WG)
fn down(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let tile = tiles[wid.y];
  let c = wid.x * WG + lid.x;
  if (tile.x >= p.E || c >= p.H) { return; }
  let k = tile.x * p.H + c;
  let j0 = tab[p.ptr + k]; let j1 = tab[p.ptr + k + 1u];
  if (j0 == j1) { return; }
  let nr = tile.z - tile.y;
  var acc: array<f32, TM>;
  for (var j = j0; j < j1; j++) {
    let i = tab[p.col + j] & 0x7fffu;
    let d = delta[j];
    for (var m = 0u; m < nr; m++) { acc[m] += A[(tile.y + m) * p.IE + i] * d; }
  }
  for (var m = 0u; m < nr; m++) { Y[(tile.y + m) * p.H + c] += acc[m]; }
}
