// A small in-memory Origin Private File System for unit tests: folders, files, synchronous access handles, writable
// streams and FileSystemHandle.move — what src/store uses, with the same DOMException names as browsers.

const notFound = (name: string) => new DOMException(`${name} not found`, 'NotFoundError');
const mismatch = (name: string) => new DOMException(`${name} is of the other kind`, 'TypeMismatchError');

type Entry = FakeDir | FakeFile;

export class FakeFile {
  readonly kind = 'file';
  data = new Uint8Array(0);
  /** Sync access handles opened and not closed (browsers allow one at a time). */
  open = 0;
  constructor(public name: string, public parent: FakeDir) {}

  async getFile(): Promise<File> {
    return new File([this.data.slice()], this.name);
  }

  private resize(n: number): void {
    const d = new Uint8Array(n);
    d.set(this.data.subarray(0, Math.min(n, this.data.byteLength)));
    this.data = d;
  }

  async createSyncAccessHandle() {
    if (this.open) throw new DOMException('the file is locked by another access handle', 'NoModificationAllowedError');
    this.open++;
    let closed = false;
    const live = () => { if (closed) throw new DOMException('the handle is closed', 'InvalidStateError'); };
    return {
      getSize: () => { live(); return this.data.byteLength; },
      truncate: (n: number) => { live(); this.resize(n); },
      write: (b: Uint8Array, o: { at: number }) => {
        live();
        if (o.at + b.byteLength > this.data.byteLength) this.resize(o.at + b.byteLength);
        this.data.set(b, o.at);
        return b.byteLength;
      },
      read: (b: Uint8Array, o: { at: number }) => {
        live();
        const part = this.data.subarray(o.at, o.at + b.byteLength);
        b.set(part);
        return part.byteLength;
      },
      flush: () => live(),
      close: () => { if (!closed) { closed = true; this.open--; } },
    };
  }

  async createWritable() {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    return {
      write: async (d: string | Uint8Array | ArrayBuffer | Blob) => {
        parts.push(typeof d === 'string' ? new TextEncoder().encode(d) : d instanceof Blob ? new Uint8Array(await d.arrayBuffer()) : new Uint8Array(d));
      },
      close: async () => { this.data = new Uint8Array(await new Blob(parts).arrayBuffer()); },
      abort: async () => undefined,
    };
  }

  async move(newName: string): Promise<void> {
    this.parent.children.delete(this.name);
    this.parent.children.set(newName, this);
    this.name = newName;
  }
}

export class FakeDir {
  readonly kind = 'directory';
  readonly children = new Map<string, Entry>();
  constructor(public name: string) {}

  async getDirectoryHandle(name: string, o: { create?: boolean } = {}): Promise<FakeDir> {
    const e = this.children.get(name);
    if (e instanceof FakeDir) return e;
    if (e) throw mismatch(name);
    if (!o.create) throw notFound(name);
    const d = new FakeDir(name);
    this.children.set(name, d);
    return d;
  }

  async getFileHandle(name: string, o: { create?: boolean } = {}): Promise<FakeFile> {
    const e = this.children.get(name);
    if (e instanceof FakeFile) return e;
    if (e) throw mismatch(name);
    if (!o.create) throw notFound(name);
    const f = new FakeFile(name, this);
    this.children.set(name, f);
    return f;
  }

  async removeEntry(name: string, o: { recursive?: boolean } = {}): Promise<void> {
    const e = this.children.get(name);
    if (!e) throw notFound(name);
    if (e instanceof FakeDir && e.children.size && !o.recursive) throw new DOMException('not empty', 'InvalidModificationError');
    this.children.delete(name);
  }

  async *entries(): AsyncIterable<[string, Entry]> {
    for (const [k, v] of [...this.children]) yield [k, v];
  }

  /** Test aid: every file below with its bytes ('/'-separated paths). */
  files(prefix = ''): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [k, v] of this.children) {
      if (v instanceof FakeFile) out.set(prefix + k, v.data);
      else for (const [p, d] of v.files(`${prefix}${k}/`)) out.set(p, d);
    }
    return out;
  }

  /** Test aid: total bytes below. */
  bytes(): number {
    return [...this.files().values()].reduce((n, d) => n + d.byteLength, 0);
  }
}

export const asRoot = (d: FakeDir): FileSystemDirectoryHandle => d as unknown as FileSystemDirectoryHandle;
