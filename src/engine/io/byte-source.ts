// Random-access byte sources: the one interface every reader uses, over memory, a Blob/File, or an HTTP URL.
// read(offset, length) returns exactly `length` bytes or throws; a URL source uses Range requests where the server has them.

/** Bytes in a plain (not shared) ArrayBuffer: what every read returns, and what Blob and GPU uploads accept. */
export type Bytes = Uint8Array<ArrayBuffer>;

export interface ByteSource {
  /** Short name used in error messages (a file name or URL). */
  readonly name: string;
  size(): Promise<number>;
  /** Exactly bytes [offset, offset + length); throws if that range is not inside the source. */
  read(offset: number, length: number): Promise<Bytes>;
  /** Releases an OS handle if the source holds one. */
  close?(): Promise<void>;
}

export type FetchFn = (url: string, init?: RequestInit) => Promise<Response>;

/** An HTTP answer other than the one expected; `status` lets callers tell "missing" (404) from other failures. */
export class HttpStatusError extends Error {
  constructor(readonly url: string, readonly status: number, what: string) {
    super(`${url}: ${what} answered HTTP ${status}`);
    this.name = 'HttpStatusError';
  }
}

/** Throws unless [offset, offset + length) is a valid integer range inside [0, size). */
export function checkRange(name: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`${name}: invalid read of ${length} bytes at offset ${offset}`);
  }
  if (offset + length > size) {
    throw new RangeError(`${name}: read of ${length} bytes at offset ${offset} runs past the end (${size} bytes)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Memory and Blob

export function memorySource(bytes: Uint8Array, name: string): ByteSource {
  return {
    name,
    size: async () => bytes.byteLength,
    read: async (offset, length) => {
      checkRange(name, offset, length, bytes.byteLength);
      return bytes.slice(offset, offset + length);
    },
  };
}

/** A Blob or File (a browser file picker's or drag-and-drop's); only the requested slice is ever read. */
export function blobSource(blob: Blob, name: string): ByteSource {
  return {
    name,
    size: async () => blob.size,
    read: async (offset, length) => {
      checkRange(name, offset, length, blob.size);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

// ---------------------------------------------------------------------------------------------
// URL

/** Total size from a 206's `Content-Range: bytes a-b/total`, or null when it has no total. */
function totalFromContentRange(header: string | null): number | null {
  const m = header ? /^bytes\s+(?:\d+-\d+|\*)\/(\d+)\s*$/i.exec(header) : null;
  return m ? Number(m[1]) : null;
}

/** Largest body urlSource keeps in memory from a server that ignores Range (config files, small shards). */
export const MAX_WHOLE_BODY = 256 * 2 ** 20;

/**
 * A file behind a URL, read with `Range: bytes=a-b` requests. A server that ignores Range (status 200 and the whole
 * body) is read once and the body kept in memory for every later read, up to `maxWhole` bytes: a larger file is refused
 * in words (holding it would defeat streaming imports). Size comes from HEAD's Content-Length, or from the total in a
 * Range answer's Content-Range.
 */
export function urlSource(url: string, fetchFn: FetchFn = (u, init) => fetch(u, init), name: string = url, maxWhole = MAX_WHOLE_BODY): ByteSource {
  let whole: Promise<Bytes> | null = null; // set once the server has shown it ignores Range
  let sizePromise: Promise<number> | null = null;

  const tooBig = (n: string) => new Error(`${name}: the server ignores Range requests and the file is ${n} bytes, more than the ` +
    `${maxWhole} this app holds in memory; download the model and import it from a folder instead`);
  async function readCapped(res: Response): Promise<Bytes> {
    const len = res.headers.get('content-length');
    if (len !== null && /^\d+$/.test(len) && Number(len) > maxWhole) {
      void res.body?.cancel();
      throw tooBig(len);
    }
    if (!res.body) return new Uint8Array(await res.arrayBuffer());
    const parts: Uint8Array[] = [];
    let n = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > maxWhole) {
        void reader.cancel();
        throw tooBig(`over ${maxWhole}`);
      }
      parts.push(value);
    }
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) (out.set(p, o), (o += p.byteLength));
    return out;
  }
  const keepWhole = (res: Response): Promise<Bytes> =>
    (whole ??= readCapped(res).catch((e: unknown) => { whole = null; throw e; }));

  /** The requested range (`isWhole` false, `total` from Content-Range) or, from a Range-ignoring server, the whole body. */
  async function ranged(offset: number, length: number): Promise<{ bytes: Bytes; isWhole: boolean; total: number | null }> {
    if (whole) return { bytes: await whole, isWhole: true, total: null };
    const res = await fetchFn(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
    if (res.status === 206) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      const total = totalFromContentRange(res.headers.get('content-range'));
      const start = /^bytes\s+(\d+)-/i.exec(res.headers.get('content-range') ?? '');
      if ((start && Number(start[1]) !== offset) || bytes.byteLength !== length) {
        throw new Error(`${name}: asked for ${length} bytes at ${offset}, the server sent ` +
          `${bytes.byteLength} (Content-Range: ${res.headers.get('content-range')})`);
      }
      return { bytes, isWhole: false, total };
    }
    if (res.status === 200) {
      if (whole) { void res.body?.cancel(); return { bytes: await whole, isWhole: true, total: null }; }
      return { bytes: await keepWhole(res), isWhole: true, total: null };
    }
    void res.body?.cancel();
    throw new HttpStatusError(url, res.status, `GET with Range bytes=${offset}-${offset + length - 1}`);
  }

  async function fetchSize(): Promise<number> {
    const head = await fetchFn(url, { method: 'HEAD' });
    const len = head.headers.get('content-length');
    const encoded = (head.headers.get('content-encoding') ?? 'identity') !== 'identity';
    if (head.ok && len !== null && !encoded && /^\d+$/.test(len)) return Number(len);
    if (head.status === 404) throw new HttpStatusError(url, 404, 'HEAD');
    const { bytes, isWhole, total } = await ranged(0, 1);
    if (isWhole) return bytes.byteLength;
    if (total !== null) return total;
    throw new Error(`${name}: the server gave neither Content-Length nor a Content-Range total (got ${bytes.byteLength} bytes)`);
  }

  return {
    name,
    size: () => (sizePromise ??= fetchSize().catch((e: unknown) => { sizePromise = null; throw e; })),
    read: async (offset, length) => {
      checkRange(name, offset, length, Number.MAX_SAFE_INTEGER);
      if (length === 0) return new Uint8Array(0);
      const { bytes, isWhole } = await ranged(offset, length);
      if (!isWhole) return bytes;
      checkRange(name, offset, length, bytes.byteLength); // the whole body: cut the range out of it
      return bytes.slice(offset, offset + length);
    },
  };
}
