// The explicit bind group layouts come from the WGSL: the buffer type of each binding an entry point uses, where a
// file's entry points declare different variables (and access modes) at one binding.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { declaredBindings } from '../../../src/engine/gpu/kernel.ts';

const elementwise = readFileSync('shaders/elementwise.wgsl', 'utf8');
const R = 'read-only-storage', W = 'storage', U = 'uniform';

describe('declaredBindings', () => {
  it('lists the bindings the entry point uses (called functions and all), each with its variable type', () => {
    expect(Object.fromEntries(declaredBindings(elementwise, 'add'))).toEqual({ 0: R, 1: R, 2: W, 3: U });
    expect(Object.fromEntries(declaredBindings(elementwise, 'clamp_forward'))).toEqual({ 0: R, 1: W, 2: U });
    expect(Object.fromEntries(declaredBindings(elementwise, 'bf16_to_f32'))).toEqual({ 0: R, 1: W, 2: U });
    expect(Object.fromEntries(declaredBindings(elementwise, 'scale_in_place'))).toEqual({ 0: W, 1: U });
  });

  it('reads access modes, attribute order and a variable reached only through a helper function', () => {
    const code = `@binding(1) @group(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(0) var<storage> inp: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;  // another entry point's
@group(1) @binding(0) var<storage, read_write> elsewhere: array<f32>;
fn put(i: u32, v: vec2f) { out[i] = v.x; }
@compute @workgroup_size(1) fn main() { put(0u, vec2f(inp[0], 0.0)); }
@compute @workgroup_size(1) fn other_main() { let v = other[0]; }`;
    expect(Object.fromEntries(declaredBindings(code, 'main'))).toEqual({ 0: R, 1: W });
    expect(Object.fromEntries(declaredBindings(code, 'other_main'))).toEqual({ 1: R });
  });
});
