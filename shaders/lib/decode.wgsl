// Stored weights to f32, for the kernels that read bf16, f16 or 4-bit data: a kernel includes this library with the line
// `// #include decode` (resolved by the kernel registry, src/engine/gpu/kernel.ts). 4-bit format: quant/FORMAT.md.

// bf16 element `hi` (false: low half, true: high half) of a word holding two (element 2i low, 2i + 1 high), as f32 bits.
fn bf16_bits(word: u32, hi: bool) -> u32 { return select(word << 16u, word & 0xffff0000u, hi); }
fn bf16_value(word: u32, hi: bool) -> f32 { return bitcast<f32>(bf16_bits(word, hi)); }

// f16 bits (the low 16 bits of h) as f32, subnormals included.
fn f16_value(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  var v = f32(m) * 5.9604644775390625e-8;                                         // subnormal: m * 2^-24
  if (e != 0u) { v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u)); }
  return select(v, -v, (h & 0x8000u) != 0u);
}

// A group's (scale, zero) word: f16 scale | f16 zero << 16.
fn q4_scale(sz: u32) -> f32 { return f16_value(sz & 0xffffu); }
fn q4_zero(sz: u32) -> f32 { return f16_value(sz >> 16u); }

// The weight of 4-bit code `code` in a group of scale s and zero z.
fn q4_weight(code: u32, s: f32, z: f32) -> f32 { return (f32(code) - z) * s; }

// The 4 weights of elements i .. i + 3 (i a multiple of 4: one code word, one group) from their code word and (scale, zero) word.
fn q4_vec4(word: u32, i: u32, sz: u32) -> vec4f {
  let c = word >> ((i & 7u) * 4u);
  let q = vec4f(f32(c & 0xfu), f32((c >> 4u) & 0xfu), f32((c >> 8u) & 0xfu), f32((c >> 12u) & 0xfu));
  return (q - q4_zero(sz)) * q4_scale(sz);
}

// The (scale, zero) word of element i in a table starting at word `off`: rows of length L, groups of G.
fn q4_sz_word(i: u32, L: u32, G: u32, off: u32) -> u32 { return off + (i / L) * ((L + G - 1u) / G) + (i % L) / G; }
