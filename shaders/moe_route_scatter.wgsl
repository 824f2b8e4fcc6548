// MoE routing, pass 3 of 3: slot[i] = offsets[topIdx[i]] + rank (in place), rowPair[slot[i]] = i (the pair t*K+k).

struct Params { R: u32, E: u32, tileM: u32, maxTiles: u32 }

@group(0) @binding(0) var<storage, read> topIdx: array<u32>;          // [R = T*K]
@group(0) @binding(1) var<storage, read> offsets: array<u32>;         // [E+1]
@group(0) @binding(2) var<storage, read_write> slot: array<u32>;      // [R] rank in, sorted row out
@group(0) @binding(3) var<storage, read_write> rowPair: array<u32>;   // [R]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn scatter(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= p.R) { return; }
  let s = offsets[topIdx[i]] + slot[i];
  slot[i] = s;
  rowPair[s] = i;
}
