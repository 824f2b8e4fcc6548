// The Supported families table (src/ui/SupportedFamilies.svelte), rendered on the server from the engine registry:
// one row per family with its display name, model_type, status, summary and example checkpoints; accessible structure.
import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import SupportedFamilies from '../../../src/ui/SupportedFamilies.svelte';
import { ARCHITECTURES, type ArchInfo } from '../../../src/engine/model/registry.ts';

const html = (families: readonly ArchInfo[]): string => render(SupportedFamilies, { props: { families } }).body;
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

describe('SupportedFamilies', () => {
  it('lists every registry family with its name, model_type, status, summary and examples', () => {
    const out = html(ARCHITECTURES);
    expect(out).toContain('<caption>');
    expect((out.match(/<th scope="row"/g) ?? []).length).toBe(ARCHITECTURES.length);
    expect((out.match(/<th scope="col"/g) ?? []).length).toBe(4);
    for (const a of ARCHITECTURES) {
      for (const text of [a.displayName, a.summary]) expect(out).toContain(esc(text));
      expect(out).toMatch(new RegExp(`<code[^>]*>${a.arch}</code>`));
      for (const ex of a.examples) expect(out).toContain(`href="https://huggingface.co/${ex}"`);
    }
    expect(out).toContain('Supported');
  });

  it('shows other statuses in words and an empty registry as a message', () => {
    const planned: ArchInfo = { ...ARCHITECTURES[0]!, status: 'planned', displayName: 'Future-MoE' };
    expect(html([planned])).toContain('Planned');
    expect(html([])).toContain('No families registered.');
  });
});
