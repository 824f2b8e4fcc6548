// The kernel registry's WGSL includes: `// #include <name>` lines become the library's source, nothing else changes,
// and an unknown library is refused by name before anything is compiled.
import { describe, expect, it } from 'vitest';
import { KernelError, withLibraries } from '../../../src/engine/gpu/kernel.ts';
import decodeLib from '../../../shaders/lib/decode.wgsl?raw';

describe('withLibraries', () => {
  it('replaces an include line with the library and keeps every other line', () => {
    const src = 'struct P { n: u32 }\n// #include decode\nfn main() {}\n';
    const out = withLibraries('k', src);
    expect(out).toBe(`struct P { n: u32 }\n${decodeLib.trimEnd()}\nfn main() {}\n`);
    expect(out).toContain('fn f16_value(h: u32) -> f32');
    expect(out).not.toContain('#include decode\n');
  });

  it('leaves sources without includes alone (an include mentioned mid-line is not one)', () => {
    const src = 'fn f() {} // see // #include decode\n';
    expect(withLibraries('k', src)).toBe(src);
  });

  it('refuses an unknown library, naming the kernel and the library', () => {
    expect(() => withLibraries('my.kernel', '// #include nope\n')).toThrow(KernelError);
    expect(() => withLibraries('my.kernel', '// #include nope\n')).toThrow(/my\.kernel.*"nope"/);
    expect(() => withLibraries('my.kernel', '// #include toString\n')).toThrow(/"toString"/);
  });
});
