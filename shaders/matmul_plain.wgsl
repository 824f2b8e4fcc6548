// matmul_tiled.wgsl's entry point on a device without subgroups: SG must stay false, so these stand-ins are never called.
fn sg_row_of(y: u32, lane: u32) -> u32 { return y; }
fn sg_shuffle(v: vec4f, lane: u32) -> vec4f { return v; }

@compute @workgroup_size(TX, TY)
fn tiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  gemm(wid, lid, 0u, 0u);
}
