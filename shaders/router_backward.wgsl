// MoE router backward, one thread per token: dLogits = d/dlogits of sum(dTopW * topW) with the selection held fixed,
// through the renormalization (+ scale) and the softmax or sigmoid. dLogits is assigned (=).

struct Params { T: u32, E: u32, K: u32, sigmoid: u32, nGroup: u32, topkGroup: u32, norm: u32, hasBias: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> dTopW: array<f32>;           // [T, K]
@group(0) @binding(1) var<storage, read> topIdx: array<u32>;          // [T, K]
@group(0) @binding(2) var<storage, read> probs: array<f32>;           // [T, E]
@group(0) @binding(3) var<storage, read_write> dLogits: array<f32>;   // [T, E]
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.x;
  if (t >= p.T) { return; }
  let E = p.E;
  let K = p.K;
  let base = t * E;
  var sum = 0.0;
  var dot = 0.0;
  for (var k = 0u; k < K; k++) {
    let pk = probs[base + topIdx[t * K + k]];
    sum += pk;
    dot += dTopW[t * K + k] * pk;
  }
  if (p.sigmoid != 0u) { sum += 1e-20; }
  // dp_k = d/dprob of the chosen expert k; sum_k dp_k * p_k (the softmax's inner product, dp is zero elsewhere)
  var pdp = 0.0;
  for (var k = 0u; k < K; k++) {
    let pk = probs[base + topIdx[t * K + k]];
    var dp = p.scale * dTopW[t * K + k];
    if (p.norm != 0u) { dp = p.scale * (dTopW[t * K + k] - dot / sum) / sum; }
    pdp += dp * pk;
  }
  for (var e = 0u; e < E; e++) {
    var dp = 0.0;
    for (var k = 0u; k < K; k++) {
      if (topIdx[t * K + k] == e) {
        dp = p.scale * dTopW[t * K + k];
        if (p.norm != 0u) { dp = p.scale * (dTopW[t * K + k] - dot / sum) / sum; }
      }
    }
    let pe = probs[base + e];
    if (p.sigmoid != 0u) { dLogits[base + e] = dp * pe * (1.0 - pe); } else { dLogits[base + e] = pe * (dp - pdp); }
  }
}
