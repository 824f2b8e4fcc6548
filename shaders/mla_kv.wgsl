// MLA key/value assembly (DeepSeek-V3): per token and head, k = [k_nope from kv_b | the token's one shared rope key] and
// v = kv_b's value part (plain copies; the backward is in mla_kv_backward.wgsl).

struct Params { tokens: u32, heads: u32, dn: u32, dr: u32, dv: u32 }

@group(0) @binding(0) var<storage, read> kvb: array<f32>;            // [T, NH, DN+DV]
@group(0) @binding(1) var<storage, read> krope: array<f32>;          // [T, DR]
@group(0) @binding(2) var<storage, read_write> k: array<f32>;        // [T, NH, DN+DR]
@group(0) @binding(3) var<storage, read_write> v: array<f32>;        // [T, NH, DV]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256;

fn flat(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 { return (wid.y * nwg.x + wid.x) * WG + lid.x; }

// One thread per (token, head, j), j over the DN + DR key columns then the DV value columns.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let w = p.dn + p.dr + p.dv;
  let i = flat(wid, nwg, lid);
  if (i >= p.tokens * p.heads * w) { return; }
  let j = i % w;
  let th = i / w;             // token * heads + head
  let t = th / p.heads;
  let src = th * (p.dn + p.dv);
  if (j < p.dn) {
    k[th * (p.dn + p.dr) + j] = kvb[src + j];
  } else if (j < p.dn + p.dr) {
    k[th * (p.dn + p.dr) + j] = krope[t * p.dr + j - p.dn];
  } else {
    let c = j - p.dn - p.dr;
    v[th * p.dv + c] = kvb[src + p.dn + c];
  }
}
