// matmul_tiled.wgsl's entry point with subgroups (the module starts with `enable subgroups;`, ops/matmul.ts adds it).
fn sg_row_of(y: u32, lane: u32) -> u32 { return subgroupShuffle(y, lane); }
fn sg_shuffle(v: vec4f, lane: u32) -> vec4f { return subgroupShuffle(v, lane); }

@compute @workgroup_size(TX, TY)
fn tiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {
  gemm(wid, lid, sg_lane, sg_size);
}
