// Contract: test-only file access for test/unit/model — JSON test data beside this file, safetensors headers
// (u64 LE length + JSON) of the shared fixtures, and where ../shared lives (absent in CI).
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const here = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));

/** `../shared` beside the repository, or null when this checkout has none. */
export const SHARED: string | null = existsSync(here('../../../../shared/fixtures')) ? here('../../../../shared/') : null;

/** JSON relative to this folder. */
export function loadJson(rel: string): unknown {
  return loadJsonFile(here(rel));
}

export function loadJsonFile(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

export type Shapes = Record<string, number[]>;

export function loadShapes(rel: string): Shapes {
  return loadJson(rel) as Shapes;
}

/** {tensor name: shape} from one safetensors file's header. */
export function readSafetensorsShapes(path: string): Shapes {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    const header = JSON.parse(buf.toString('utf8')) as Record<string, { shape: number[] }>;
    const out: Shapes = {};
    for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') out[k] = v.shape;
    return out;
  } finally {
    closeSync(fd);
  }
}

export const numel = (shapes: Shapes): number =>
  Object.values(shapes).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
