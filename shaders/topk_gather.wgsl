// Top-k over a tensor seen in parts (train/chunked-topk.ts), gather step: candidates at dst.. from picked positions,
// outVal[dst + j] = x[pick[j]] (bits copied), outIdx[dst + j] = srcIdx[pick[j]] when mapping, else base + pick[j].

struct Params { n: u32, dst: u32, base: u32, map: u32 }

@group(0) @binding(0) var<storage, read> x: array<u32>;              // values (f32 bits)
@group(0) @binding(1) var<storage, read> pick: array<u32>;           // [n] positions in x
@group(0) @binding(2) var<storage, read> srcIdx: array<u32>;         // global index of each x (map only)
@group(0) @binding(3) var<storage, read_write> outVal: array<u32>;   // [dst + n]
@group(0) @binding(4) var<storage, read_write> outIdx: array<u32>;   // [dst + n]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var j = gid.x; j < p.n; j += nwg.x * WG) {
    let i = pick[j];
    outVal[p.dst + j] = x[i];
    outIdx[p.dst + j] = select(p.base + i, srcIdx[i], p.map != 0u);
  }
}
