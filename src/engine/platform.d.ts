// The web-platform APIs the engine uses, which browsers and Node (>= 20) both provide: the engine's own type check
// (src/engine/tsconfig.json) has no DOM and no Node typings, only these, so any other runtime-specific API used in
// src/engine fails it. Subsets of the WHATWG / W3C interfaces, with their names and signatures. The whole project's
// check (tsconfig.json) excludes this file and uses the DOM typings instead.

declare var performance: { now(): number };

declare class TextEncoder {
  encode(input?: string): Uint8Array<ArrayBuffer>;
}

declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: ArrayBuffer | ArrayBufferView): string;
}

declare class Blob {
  constructor(parts?: readonly (ArrayBuffer | ArrayBufferView | Blob | string)[], options?: { type?: string });
  readonly size: number;
  readonly type: string;
  slice(start?: number, end?: number, contentType?: string): Blob;
  arrayBuffer(): Promise<ArrayBuffer>;
}

interface ReadableStreamDefaultReader<R> {
  read(): Promise<{ done: false; value: R } | { done: true; value?: undefined }>;
  cancel(reason?: unknown): Promise<void>;
}

interface ReadableStream<R> {
  getReader(): ReadableStreamDefaultReader<R>;
  cancel(reason?: unknown): Promise<void>;
}

interface Headers {
  get(name: string): string | null;
}

interface Response {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array> | null;
  arrayBuffer(): Promise<ArrayBuffer>;
}

interface RequestInit {
  method?: string;
  headers?: Record<string, string>;
}

declare function fetch(input: string, init?: RequestInit): Promise<Response>;

interface AbortSignal {
  readonly aborted: boolean;
  readonly reason: any;
}
