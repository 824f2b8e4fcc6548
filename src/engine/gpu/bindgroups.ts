// Bind groups cached by kernel variant and bindings (each buffer's identity, offset and size), so a step that binds
// the same buffers as the last one creates none. A destroyed buffer's bind groups are dropped with it; buffers let go
// without destroy() are dropped when the cache outgrows its bound.

import type { KernelVariant } from './kernel.ts';

/** Cached bind groups per device at most; past it the cache starts over. */
const MAX_ENTRIES = 8192;

interface BufferRecord {
  id: number;
  /** Cache keys that bind this buffer (dropped when it is destroyed). */
  keys: Set<string>;
}

const records = new WeakMap<GPUBuffer, BufferRecord>();
let nextId = 0;

function recordOf(b: GPUBuffer, cache: Map<string, GPUBindGroup>): BufferRecord {
  let r = records.get(b);
  if (!r) {
    const rec: BufferRecord = (r = { id: ++nextId, keys: new Set() });
    records.set(b, rec);
    const destroy = b.destroy.bind(b);
    b.destroy = () => {
      for (const k of rec.keys) cache.delete(k);
      rec.keys.clear();
      destroy();
    };
  }
  return r;
}

const caches = new WeakMap<GPUDevice, Map<string, GPUBindGroup>>();

/**
 * The bind group of `v` binding `buffers` to @binding(0..n-1) and, when given, `params` (a range of the uniform
 * buffer at offset 0, moved by the dispatch's dynamic offset) to @binding(n). Created on first use.
 */
export function bindGroup(device: GPUDevice, label: string, v: KernelVariant, buffers: (GPUBuffer | GPUBufferBinding)[], params: { buffer: GPUBuffer; size: number } | null): GPUBindGroup {
  let cache = caches.get(device);
  if (!cache) caches.set(device, (cache = new Map()));
  const recs: BufferRecord[] = [];
  let key = `${v.id}`;
  for (const b of buffers) {
    if ('mapState' in b) {
      const r = recordOf(b, cache);
      recs.push(r);
      key += `|${r.id}`;
    } else {
      const r = recordOf(b.buffer, cache);
      recs.push(r);
      key += `|${r.id}:${b.offset ?? 0}:${b.size ?? '-'}`;
    }
  }
  if (params) {
    const r = recordOf(params.buffer, cache);
    recs.push(r);
    key += `|${r.id}:0:${params.size}`;
  }
  const hit = cache.get(key);
  if (hit) return hit;
  const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({ binding: i, resource: 'mapState' in b ? { buffer: b } : b }));
  if (params) entries.push({ binding: buffers.length, resource: { buffer: params.buffer, offset: 0, size: params.size } });
  const bg = device.createBindGroup({ label, layout: v.layout, entries });
  if (cache.size >= MAX_ENTRIES) cache.clear();
  cache.set(key, bg);
  for (const r of recs) r.keys.add(key);
  return bg;
}
