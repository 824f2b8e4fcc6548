// MoE router forward, one thread per token: probs = softmax/sigmoid(logits); choice = probs (+ bias), group-limited;
// top-K by choice (ties -> lower index), weights = chosen probs (renormalized) * scale. All in f32.

struct Params { T: u32, E: u32, K: u32, sigmoid: u32, nGroup: u32, topkGroup: u32, norm: u32, hasBias: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;        // [T, E]
@group(0) @binding(1) var<storage, read> bias: array<f32>;          // [E] (ignored unless hasBias)
@group(0) @binding(2) var<storage, read_write> topIdx: array<u32>;  // [T, K]
@group(0) @binding(3) var<storage, read_write> topW: array<f32>;    // [T, K]
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;   // [T, E]
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64;

// Choice score of expert e of the token at row base (reads this thread's own probs writes).
fn choice(base: u32, e: u32) -> f32 {
  var c = probs[base + e];
  if (p.hasBias != 0u) { c += bias[e]; }
  return c;
}

// a = (score ca, index ea) ranks before b: higher score first, ties -> lower index.
fn before(ca: f32, ea: u32, cb: f32, eb: u32) -> bool {
  return ca > cb || (ca == cb && ea < eb);
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.x;
  if (t >= p.T) { return; }
  let E = p.E;
  let base = t * E;
  // ---- probabilities
  if (p.sigmoid != 0u) {
    for (var e = 0u; e < E; e++) { probs[base + e] = 1.0 / (1.0 + exp(-logits[base + e])); }
  } else {
    var mx = logits[base];
    for (var e = 1u; e < E; e++) { mx = max(mx, logits[base + e]); }
    var s = 0.0;
    for (var e = 0u; e < E; e++) { s += exp(logits[base + e] - mx); }
    for (var e = 0u; e < E; e++) { probs[base + e] = exp(logits[base + e] - mx) / s; }
  }
  // ---- group-limited choice: keep the topkGroup groups with the best top-2 sums (bit g of `keep`)
  var keep = 0xffffffffu;
  if (p.nGroup > 1u) {
    let gs = E / p.nGroup;
    keep = 0u;
    for (var r = 0u; r < p.topkGroup; r++) {
      var bestS = 0.0;
      var bestG = p.nGroup;
      for (var g = 0u; g < p.nGroup; g++) {
        if ((keep & (1u << g)) != 0u) { continue; }
        var a = -3.0e38;
        var b = -3.0e38;
        for (var i = 0u; i < gs; i++) {
          let c = choice(base, g * gs + i);
          if (c > a) { b = a; a = c; } else if (c > b) { b = c; }
        }
        if (bestG == p.nGroup || a + b > bestS) { bestS = a + b; bestG = g; }
      }
      keep |= 1u << bestG;
    }
  }
  // ---- top-K: repeatedly take the best entry ranked after the previous pick
  var prevC = 0.0;
  var prevE = 0u;
  var sum = 0.0;
  for (var k = 0u; k < p.K; k++) {
    var bestC = 0.0;
    var bestE = E;
    for (var e = 0u; e < E; e++) {
      var c = choice(base, e);
      if (p.nGroup > 1u && (keep & (1u << (e / (E / p.nGroup)))) == 0u) { c = 0.0; }
      if (k > 0u && !before(prevC, prevE, c, e)) { continue; }
      if (bestE == E || before(c, e, bestC, bestE)) { bestC = c; bestE = e; }
    }
    prevC = bestC;
    prevE = bestE;
    topIdx[t * p.K + k] = bestE;
    let w = probs[base + bestE];
    topW[t * p.K + k] = w;
    sum += w;
  }
  // ---- weights
  var mul = p.scale;
  if (p.norm != 0u) {
    if (p.sigmoid != 0u) { sum += 1e-20; }
    mul = p.scale / sum;
  }
  for (var k = 0u; k < p.K; k++) { topW[t * p.K + k] = topW[t * p.K + k] * mul; }
}
