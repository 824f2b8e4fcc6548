// Backward of the MLA key/value assembly: dkvB gets dk's nope part and dv (=); the rope key is shared by every head,
// so dkRope = dk's rope part summed over the heads (=). Two entry points, each with its own bindings.

struct Params { tokens: u32, heads: u32, dn: u32, dr: u32, dv: u32 }

@group(0) @binding(0) var<storage, read> dk: array<f32>;             // [T, NH, DN+DR]
@group(0) @binding(1) var<storage, read> dvin: array<f32>;           // [T, NH, DV]
@group(0) @binding(2) var<storage, read_write> dkvb: array<f32>;     // [T, NH, DN+DV]
@group(0) @binding(3) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> dkrope: array<f32>;   // [T, DR]
@group(0) @binding(2) var<uniform> pr: Params;

override WG: u32 = 256;

fn flat(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * WG + lid.x; }

// One thread per element of dkvb.
@compute @workgroup_size(WG)
fn backward_kv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let w = p.dn + p.dv;
  let i = flat(wid, nwg, lid);
  if (i >= p.tokens * p.heads * w) { return; }
  let j = i % w;
  let th = i / w;
  if (j < p.dn) {
    dkvb[i] = dk[th * (p.dn + p.dr) + j];
  } else {
    dkvb[i] = dvin[th * p.dv + j - p.dn];
  }
}

// One thread per element of dkrope: the rope key is shared by every head, so its gradient sums over them.
@compute @workgroup_size(WG)
fn backward_rope(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wid, nwg, lid);
  if (i >= pr.tokens * pr.dr) { return; }
  let t = i / pr.dr;
  let r = i % pr.dr;
  let dq = pr.dn + pr.dr;
  var s = 0.0;
  for (var h = 0u; h < pr.heads; h++) { s += dk[(t * pr.heads + h) * dq + pr.dn + r]; }
  dkrope[i] = s;
}
