// Kernel registry: compiles a WGSL source + entry point (+ override constants) once, by name, and dispatches it.
// Bindings are positional (inputs, outputs, then the params uniform), all in @group(0), matching the shader's order.
// A line `// #include <name>` in a source is replaced by the WGSL library shaders/lib/<name>.wgsl before compiling.

import type { GpuContext } from './device.ts';
import type { Encoder } from './encoder.ts';
import { reportError } from './errors.ts';
import type { KernelCost } from './cost.ts';
import decodeLib from '../../../shaders/lib/decode.wgsl?raw';

/** The WGSL libraries a kernel may include, by name. */
const LIBRARIES: Record<string, string> = { decode: decodeLib };

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

export class Kernel {
  constructor(
    readonly name: string,
    readonly pipeline: GPUComputePipeline,
    readonly layout: GPUBindGroupLayout,
  ) {}

  /** Record one dispatch. `buffers` are bound to @binding(0..n-1) in order; a trailing params uniform is added by `params`. */
  /** `cost` (FLOPs, bytes read + written) from the launcher's arithmetic feeds the cost model (gpu/cost.ts) only. */
  dispatch(enc: Encoder, buffers: (GPUBuffer | GPUBufferBinding)[], workgroups: [number, number?, number?], params?: ArrayBufferView | ArrayBuffer, cost?: KernelCost): void {
    enc.dispatch(this, buffers, workgroups, params, cost);
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

/** Compile (once per device) and return the kernel. Compilation errors throw a KernelError naming it. */
export function kernel(gpu: GpuContext, desc: KernelDesc): Kernel {
  let m = cache.get(gpu.device);
  if (!m) cache.set(gpu.device, (m = new Map()));
  const key = keyOf(desc);
  const hit = m.get(key);
  if (hit) return hit;
  const device = gpu.device;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: desc.name, code: withLibraries(desc.name, desc.code) });
  const pipeline = device.createComputePipeline({
    label: desc.name,
    layout: 'auto',
    compute: { module, entryPoint: desc.entryPoint, constants: desc.constants },
  });
  const layout = pipeline.getBindGroupLayout(0);
  const errPromise = device.popErrorScope();
  const k = new Kernel(desc.name, pipeline, layout);
  // Surface compile errors loudly: WebGPU reports them asynchronously.
  errPromise.then(async (err) => {
    if (!err) return;
    const infoMsgs = await module.getCompilationInfo().then((ci) => ci.messages.map((x) => `${x.lineNum}:${x.linePos} ${x.message}`).join('\n')).catch(() => '');
    const e = new KernelError(desc.name, `${err.message}${infoMsgs ? '\n' + infoMsgs : ''}`);
    reportError(gpu, e);
  });
  m.set(key, k);
  return k;
}

