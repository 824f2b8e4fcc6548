// Top-k radix select, after each histogram pass (one workgroup): find the digit value b where the count of elements
// above it is < remaining <= the count at or above it; prefix |= b << shift, remaining -= count above; clear the histogram.

struct Params { n: u32, k: u32, shift: u32, bits: u32, round: u32, nChunks: u32, chunkSize: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read_write> ws: array<u32>;   // [0, 2048) histogram, [2048] prefix, [2049] remaining
@group(0) @binding(1) var<uniform> p: Params;

override WG: u32 = 256;
const BINS = 2048u;
const STATE = 2048u;
var<workgroup> sums: array<u32, WG>;

@compute @workgroup_size(WG)
fn select_digit(@builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  let bins = 1u << p.bits;
  var prefix = 0u;
  var rem = p.k;
  if (p.round > 0u) {
    prefix = ws[STATE];
    rem = ws[STATE + 1u];
  }
  // thread lid owns `per` bins in descending order: bin bins-1 - (lid*per + q)
  let per = (bins + WG - 1u) / WG;
  var own = 0u;
  for (var q = 0u; q < per; q++) {
    let i = lid * per + q;
    if (i < bins) { own += ws[bins - 1u - i]; }
  }
  sums[lid] = own;
  workgroupBarrier();
  for (var off = 1u; off < WG; off *= 2u) {
    var add = 0u;
    if (lid >= off) { add = sums[lid - off]; }
    workgroupBarrier();
    sums[lid] += add;
    workgroupBarrier();
  }
  let incl = sums[lid];
  var acc = incl - own;
  if (acc < rem && rem <= incl) {
    for (var q = 0u; q < per; q++) {
      let b = bins - 1u - (lid * per + q);
      let c = ws[b];
      if (acc + c >= rem) {
        ws[STATE] = prefix | (b << p.shift);
        ws[STATE + 1u] = rem - acc;
        break;
      }
      acc += c;
    }
  }
  storageBarrier();
  for (var b = lid; b < BINS; b += WG) { ws[b] = 0u; }
}
