// Kernel registry: compiles a WGSL source + entry point (+ override constants) once, by name, and dispatches it.
// Bindings are positional (inputs, outputs, then the params uniform), all in @group(0), matching the shader's order.
// A line `// #include <name>` in a source is replaced by the WGSL library shaders/lib/<name>.wgsl before compiling.
// The bind group layout is explicit, built from the shader's declarations for the bindings a launch passes: the params
// uniform has a dynamic offset (one uniform buffer serves all dispatches of a submit, gpu/encoder.ts), which an 'auto'
// layout cannot express.

import type { GpuContext } from './device.ts';
import type { Encoder } from './encoder.ts';
import { reportError } from './errors.ts';
import type { KernelCost } from './cost.ts';
import decodeLib from '../../../shaders/lib/decode.wgsl?raw';

/** The WGSL libraries a kernel may include, by name. */
const LIBRARIES: Record<string, string> = { decode: decodeLib };

/** GPUShaderStage.COMPUTE (the spec's value; Node's WebGPU globals may not exist yet). */
const COMPUTE_STAGE = 4;

export class KernelError extends Error {
  override name = 'KernelError';
  constructor(readonly kernel: string, message: string) {
    super(`kernel "${kernel}": ${message}`);
  }
}

export interface KernelDesc {
  /** Unique, human-readable name, e.g. "rmsnorm.forward". Errors name it. */
  name: string;
  code: string;
  entryPoint: string;
  constants?: Record<string, number>;
}

/** A pipeline and its bind group layout for one shape of launch: `buffers` storage bindings, then maybe the params uniform. */
export interface KernelVariant {
  /** Unique per device: bind groups are cached under it (gpu/encoder.ts). */
  id: number;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

let variantIds = 0;

/** Compute pipelines built so far in this realm (all devices): a test counts what a step compiles. */
export function pipelinesBuilt(): number {
  return variantIds;
}

export class Kernel {
  private variants = new Map<number, KernelVariant>();

  constructor(
    readonly name: string,
    private readonly gpu: GpuContext,
    private readonly module: GPUShaderModule,
    private readonly desc: KernelDesc,
    /** Buffer type of each @group(0) binding the WGSL declares, by binding index. */
    readonly bindings: ReadonlyMap<number, GPUBufferBindingType>,
  ) {}

  /** Record one dispatch. `buffers` are bound to @binding(0..n-1) in order; a trailing params uniform is added by `params`. */
  /** `cost` (FLOPs, bytes read + written) from the launcher's arithmetic feeds the cost model (gpu/cost.ts) only. */
  dispatch(enc: Encoder, buffers: (GPUBuffer | GPUBufferBinding)[], workgroups: [number, number?, number?], params?: ArrayBufferView | ArrayBuffer, cost?: KernelCost): void {
    enc.dispatch(this, buffers, workgroups, params, cost);
  }

  /**
   * The pipeline for launches binding `nBuffers` buffers (+ the params uniform at @binding(nBuffers), dynamic offset,
   * when `params`), built once. Layout entries are the declared bindings among those: an undeclared one passed by the
   * launcher is then a bind group validation error naming the kernel, as with an 'auto' layout.
   */
  variant(nBuffers: number, params: boolean): KernelVariant {
    const key = nBuffers * 2 + (params ? 1 : 0);
    const hit = this.variants.get(key);
    if (hit) return hit;
    const device = this.gpu.device;
    const entries: GPUBindGroupLayoutEntry[] = [];
    for (let i = 0; i < nBuffers + (params ? 1 : 0); i++) {
      const type = this.bindings.get(i);
      if (!type) continue; // not used by the shader: bound anyway, a bind group error names the kernel
      const dynamic = params && i === nBuffers && type === 'uniform';
      entries.push({ binding: i, visibility: COMPUTE_STAGE, buffer: { type, hasDynamicOffset: dynamic } });
    }
    device.pushErrorScope('validation');
    const layout = device.createBindGroupLayout({ label: this.name, entries });
    const pipeline = device.createComputePipeline({
      label: this.name,
      layout: device.createPipelineLayout({ label: this.name, bindGroupLayouts: [layout] }),
      compute: { module: this.module, entryPoint: this.desc.entryPoint, constants: this.desc.constants },
    });
    reportCompileErrors(this.gpu, this.name, this.module, device.popErrorScope());
    const v = { id: ++variantIds, pipeline, layout };
    this.variants.set(key, v);
    return v;
  }
}

const cache = new WeakMap<GPUDevice, Map<string, Kernel>>();

function keyOf(d: KernelDesc): string {
  const c = d.constants ? Object.entries(d.constants).sort().map(([k, v]) => `${k}=${v}`).join(',') : '';
  return `${d.name}|${d.entryPoint}|${c}`;
}

/** `source` with each `// #include <name>` line replaced by that library; an unknown name throws a KernelError. */
export function withLibraries(kernelName: string, source: string): string {
  return source.replace(/^\/\/ #include (\S+)[ \t]*$/gm, (_, name: string) => {
    const lib = Object.hasOwn(LIBRARIES, name) ? LIBRARIES[name] : undefined;
    if (lib === undefined) throw new KernelError(kernelName, `includes unknown WGSL library "${name}" (known: ${Object.keys(LIBRARIES).join(', ')})`);
    return lib.trimEnd();
  });
}

const DECL = /@(group|binding)\s*\(\s*(\d+)\s*\)\s*@(group|binding)\s*\(\s*(\d+)\s*\)\s*var\s*<\s*(storage|uniform)\s*(?:,\s*(read_write|read)\s*)?>\s*([A-Za-z_]\w*)/g;
const FN = /\bfn\s+([A-Za-z_]\w*)\s*\(/g;
const IDENT = /(?<![.\w])[A-Za-z_]\w*/g; // not a member (v.y)

/** Each top-level function's body by name (from its opening brace to the matching closing one). */
function functionBodies(code: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of code.matchAll(FN)) {
    const open = code.indexOf('{', m.index);
    if (open < 0) continue;
    let depth = 0, end = open;
    for (; end < code.length; end++) {
      if (code[end] === '{') depth++;
      else if (code[end] === '}' && --depth === 0) break;
    }
    out.set(m[1]!, code.slice(open, end + 1));
  }
  return out;
}

/** Identifiers appearing in `entryPoint` and the functions it calls, transitively. */
function reachableIdentifiers(code: string, entryPoint: string): Set<string> {
  const bodies = functionBodies(code);
  const seen = new Set<string>([entryPoint]);
  const idents = new Set<string>();
  const todo = [entryPoint];
  while (todo.length) {
    const body = bodies.get(todo.pop()!) ?? '';
    for (const [id] of body.matchAll(IDENT)) {
      idents.add(id);
      if (bodies.has(id) && !seen.has(id)) (seen.add(id), todo.push(id));
    }
  }
  return idents;
}

/**
 * The buffer type of each @group(0) binding `entryPoint` uses in `code` (storage `read` or default →
 * read-only-storage), as an 'auto' layout has them. A file's entry points may declare different variables at one
 * binding: the one it names (directly or in a function it calls) counts.
 */
export function declaredBindings(code: string, entryPoint: string): Map<number, GPUBufferBindingType> {
  const src = code.replace(/\/\/[^\n]*/g, '');
  const used = reachableIdentifiers(src, entryPoint);
  const out = new Map<number, GPUBufferBindingType>();
  for (const m of src.matchAll(DECL)) {
    const group = m[1] === 'group' ? m[2] : m[4];
    const binding = Number(m[1] === 'binding' ? m[2] : m[4]);
    if (group !== '0' || !used.has(m[7]!)) continue;
    out.set(binding, m[5] === 'uniform' ? 'uniform' : m[6] === 'read_write' ? 'storage' : 'read-only-storage');
  }
  return out;
}

/** Surface compile errors loudly: WebGPU reports them asynchronously. */
function reportCompileErrors(gpu: GpuContext, name: string, module: GPUShaderModule, scope: Promise<GPUError | null>): void {
  scope.then(async (err) => {
    if (!err) return;
    const infoMsgs = await module.getCompilationInfo().then((ci) => ci.messages.map((x) => `${x.lineNum}:${x.linePos} ${x.message}`).join('\n')).catch(() => '');
    reportError(gpu, new KernelError(name, `${err.message}${infoMsgs ? '\n' + infoMsgs : ''}`));
  });
}

/** Compile (once per device) and return the kernel. Compilation errors are reported (errors.ts) naming it. */
export function kernel(gpu: GpuContext, desc: KernelDesc): Kernel {
  let m = cache.get(gpu.device);
  if (!m) cache.set(gpu.device, (m = new Map()));
  const key = keyOf(desc);
  const hit = m.get(key);
  if (hit) return hit;
  const device = gpu.device;
  const code = withLibraries(desc.name, desc.code);
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: desc.name, code });
  reportCompileErrors(gpu, desc.name, module, device.popErrorScope());
  const k = new Kernel(desc.name, gpu, module, desc, declaredBindings(code, desc.entryPoint));
  m.set(key, k);
  return k;
}
