// MoE routing, pass 1 of 3: one workgroup per expert e counts the pairs (t, k) routed to e and writes each one's
// rank among them (in pair order t*K+k) into slot. Deterministic: a workgroup scan, no atomics.

struct Params { R: u32, E: u32, tileM: u32, maxTiles: u32 }

@group(0) @binding(0) var<storage, read> topIdx: array<u32>;          // [R = T*K]
@group(0) @binding(1) var<storage, read_write> slot: array<u32>;      // [R] rank within its expert (pass 3 adds offsets)
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;    // [E]
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256;
var<workgroup> sums: array<u32, WG>;

// Inclusive scan of v over the workgroup (Hillis-Steele).
fn scan(lid: u32, v: u32) -> u32 {
  sums[lid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off *= 2u) {
    var add = 0u;
    if (lid >= off) { add = sums[lid - off]; }
    workgroupBarrier();
    sums[lid] += add;
    workgroupBarrier();
  }
  return sums[lid];
}

@compute @workgroup_size(WG)
fn rank(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let e = wid.x;
  let lid = lid3.x;
  let chunk = (p.R + WG - 1u) / WG;
  let start = lid * chunk;
  let end = min(start + chunk, p.R);
  var c = 0u;
  for (var i = start; i < end; i++) { if (topIdx[i] == e) { c++; } }
  var r = scan(lid, c) - c;
  for (var i = start; i < end; i++) {
    if (topIdx[i] == e) { slot[i] = r; r++; }
  }
  if (lid == WG - 1u) { counts[e] = r; }
}
