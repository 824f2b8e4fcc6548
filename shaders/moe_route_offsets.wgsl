// MoE routing, pass 2 of 3 (one workgroup): offsets = exclusive prefix sum of counts, and the tile table:
// tile i = (expert, first row, end row, 0): ceil(count_e / tileM) tiles per expert in expert order, then (NO_EXPERT, 0, 0, 0).

struct Params { R: u32, E: u32, tileM: u32, maxTiles: u32 }

@group(0) @binding(0) var<storage, read> counts: array<u32>;          // [E]
@group(0) @binding(1) var<storage, read_write> offsets: array<u32>;   // [E+1]
@group(0) @binding(2) var<storage, read_write> tiles: array<vec4u>;   // [maxTiles] (expert, first row, end row, 0)
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;
var<workgroup> sums: array<vec2u, WG>;

@compute @workgroup_size(WG)
fn offsets_main(@builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let chunk = (p.E + WG - 1u) / WG;
  let start = lid * chunk;
  let end = min(start + chunk, p.E);
  var v = vec2u(0u);   // (rows, tiles) of this thread's experts
  for (var e = start; e < end; e++) { v += vec2u(counts[e], (counts[e] + p.tileM - 1u) / p.tileM); }
  sums[lid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off *= 2u) {
    var add = vec2u(0u);
    if (lid >= off) { add = sums[lid - off]; }
    workgroupBarrier();
    sums[lid] += add;
    workgroupBarrier();
  }
  var at = sums[lid] - v;
  let totalTiles = sums[WG - 1u].y;
  for (var e = start; e < end; e++) {
    offsets[e] = at.x;
    let c = counts[e];
    for (var r = 0u; r < c; r += p.tileM) {
      tiles[at.y] = vec4u(e, at.x + r, at.x + min(r + p.tileM, c), 0u);
      at.y++;
    }
    at.x += c;
  }
  if (lid == 0u) { offsets[p.E] = sums[WG - 1u].x; }
  for (var i = totalTiles + lid; i < p.maxTiles; i += WG) {
    tiles[i] = vec4u(0xffffffffu, 0u, 0u, 0u);
  }
}
