// Embedding lookup out[t, :] = table[ids[t], :] as a bit copy (bf16 rows widened to f32, f32 rows copied as they are).
// An id >= vocab reads nothing and writes NaN over its row, so a bad token shows up instead of reading out of bounds.

struct Params { tokens: u32, hidden: u32, vocab: u32, table_off: u32 }

@group(0) @binding(0) var<storage, read> ids: array<u32>;           // [tokens]
@group(0) @binding(1) var<storage, read> table: array<u32>;         // [vocab, hidden] at table_off: f32 bits, or bf16 pairs
@group(0) @binding(2) var<storage, read_write> out: array<u32>;     // [tokens, hidden] f32 bits
@group(0) @binding(3) var<uniform> p: Params;

override TABLE_BF16: bool = true;
override WG: u32 = 256;
const QUIET_NAN = 0x7fc00000u;
// #include decode

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
  if (i >= p.tokens * p.hidden) { return; }
  let t = i / p.hidden;
  let id = ids[t];
  if (id >= p.vocab) { out[i] = QUIET_NAN; return; }
  let e = p.table_off + id * p.hidden + (i - t * p.hidden);
  if (TABLE_BF16) {
    let word = table[e >> 1u];
    out[i] = bf16_bits(word, (e & 1u) == 1u);
  } else {
    out[i] = table[e];
  }
}
