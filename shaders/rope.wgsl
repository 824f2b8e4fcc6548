// Rotary position embedding, IN PLACE on x: dims [rot_start, rot_start + rot_dim) of every head of token t rotate by
// the angles of positions[t] (tables carry the attention factor). forward: halves (i, i+rot_dim/2) or interleaved pairs (2i, 2i+1) -> halves; backward: the transpose.

struct Params {
  tokens: u32,        // T
  n_heads: u32,
  head_dim: u32,      // stride between heads of one token
  token_stride: u32,  // stride between tokens (n_heads * head_dim when packed)
  offset: u32,        // element offset of token 0, head 0 in x
  rot_start: u32,
  rot_dim: u32,       // even, <= MAX_ROT
  interleave: u32,    // 1: pairs (2i, 2i+1) in the input, written back as halves (transformers' rope_interleave)
}

@group(0) @binding(0) var<storage, read> positions: array<u32>;  // [T]
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;      // [maxPos, rot_dim/2]
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;      // [maxPos, rot_dim/2]
@group(0) @binding(3) var<storage, read_write> x: array<f32>;    // [T, n_heads, head_dim] (strided), rotated in place
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;
override MAX_ROT: u32 = 256;
// One head's rotated slice, staged so that the interleaved permutation can be written back in place.
var<workgroup> row: array<f32, MAX_ROT>;

// ---------------------------------------------------------------------------------------------------------------
// One workgroup per token, heads one after another. inverse=false: forward; inverse=true: backward (rotate by -angle,
// read halves, write pairs back in the input layout).
fn rotate_token(t: u32, lid: u32, inverse: bool) {
  let half = p.rot_dim / 2u;
  let pos = positions[t];
  let inter = p.interleave != 0u;
  for (var h = 0u; h < p.n_heads; h++) {
    let base = p.offset + t * p.token_stride + h * p.head_dim + p.rot_start;
    for (var i = lid; i < p.rot_dim; i += WG) { row[i] = x[base + i]; }
    workgroupBarrier();
    for (var i = lid; i < half; i += WG) {
      let c = cos_t[pos * half + i];
      let s = sin_t[pos * half + i];
      let ia = select(i, 2u * i, inter);          // slot of the pair's first element in the input layout
      let ib = select(i + half, 2u * i + 1u, inter);
      if (!inverse) {
        let a = row[ia];
        let b = row[ib];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      } else {
        let a = row[i];
        let b = row[i + half];
        x[base + ia] = a * c + b * s;
        x[base + ib] = b * c - a * s;
      }
    }
    workgroupBarrier();
  }
}

fn token_of(wid: vec3u) -> u32 { return wid.x + wid.y * 65535u; }

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = token_of(wid);
  if (t >= p.tokens) { return; }
  rotate_token(t, lid, false);
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = token_of(wid);
  if (t >= p.tokens) { return; }
  rotate_token(t, lid, true);
}
