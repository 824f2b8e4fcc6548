// A GPUDevice that runs nothing: buffers hold no memory, kernels compile to nothing, the n-th readback maps the u32
// words i * (1 + n % 7) (as f32: finite subnormals, so losses read ~0, flags 0, and index sets come back sorted, unique
// and different from one selection to the next, as on a GPU). With countCalls (cost.ts) it is the cost model's device:
// the training code runs on it unchanged and is counted.

import type { GpuContext, GpuInfo } from './device.ts';
import { countCalls, type CallCounts } from './cost.ts';

/** Limits of a large discrete GPU as Dawn reports them (what the planner and the launchers check against). */
const LIMITS = {
  maxBufferSize: 2 ** 31,
  maxStorageBufferBindingSize: 2 ** 31,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupSizeY: 1024,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 10,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
};

const none = <T>(): T => ({}) as T;

let readbacks = 0;

/**
 * Bytes the readbacks return, in order, instead of the pattern: a real run's (recordReadbacks), so that the training
 * code takes the same branches (which entries a reselection grows or drops) and issues the same calls.
 */
export type Replay = ArrayBuffer[];

function nullBuffer(desc: GPUBufferDescriptor, replay?: Replay): GPUBuffer {
  const size = desc.size;
  let mapped: ArrayBuffer | null = null;
  return {
    label: desc.label ?? '', size, usage: desc.usage, mapState: 'unmapped',
    destroy() {},
    async mapAsync(_mode: number, offset = 0, len = size - offset) {
      const next = replay?.shift();
      if (next) {
        if (next.byteLength !== len) throw new Error(`counting device: replayed readback of ${next.byteLength} bytes where ${len} are mapped (the runs diverged)`);
        mapped = next;
        return;
      }
      mapped = new ArrayBuffer(len);
      const w = new Uint32Array(mapped, 0, len >> 2);
      const stride = 1 + (readbacks++ % 7);
      for (let i = 0; i < w.length; i++) w[i] = i * stride;
    },
    getMappedRange: () => mapped ?? new ArrayBuffer(size),
    unmap() {
      mapped = null;
    },
  } as unknown as GPUBuffer;
}

function nullEncoder(): GPUCommandEncoder {
  const pass = { setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {}, dispatchWorkgroupsIndirect() {}, end() {} };
  return {
    beginComputePass: () => ({ ...pass }),
    copyBufferToBuffer() {},
    clearBuffer() {},
    resolveQuerySet() {},
    finish: () => none<GPUCommandBuffer>(),
  } as unknown as GPUCommandEncoder;
}

/** The device itself (uncounted). */
export function nullDevice(replay?: Replay): GPUDevice {
  const queue = {
    submit() {},
    writeBuffer() {},
    onSubmittedWorkDone: () => Promise.resolve(),
  };
  return {
    label: 'null', features: new Set<string>(), limits: { ...LIMITS }, queue,
    lost: new Promise<never>(() => {}),
    createBuffer: (d: GPUBufferDescriptor) => nullBuffer(d, replay),
    createCommandEncoder: nullEncoder,
    createShaderModule: () => ({ getCompilationInfo: async () => ({ messages: [] }) }),
    createBindGroupLayout: () => none<GPUBindGroupLayout>(),
    createPipelineLayout: () => none<GPUPipelineLayout>(),
    createComputePipeline: () => none<GPUComputePipeline>(),
    createBindGroup: () => none<GPUBindGroup>(),
    createQuerySet: () => ({ destroy() {} }),
    pushErrorScope() {},
    popErrorScope: () => Promise.resolve(null),
    destroy() {},
  } as unknown as GPUDevice;
}

/** A GpuContext on a null device with its calls counted (cost.ts). `name` is reported as the adapter. */
export function countingGpu(name = 'counting device (no kernels run)', replay?: Replay): { gpu: GpuContext; counts: CallCounts } {
  const device = nullDevice(replay);
  const counts = countCalls(device);
  const info: GpuInfo = {
    vendor: 'nvidia', architecture: 'counting', device: name, description: name, features: [],
    maxBufferSize: LIMITS.maxBufferSize, maxStorageBufferBindingSize: LIMITS.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: LIMITS.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: LIMITS.maxComputeInvocationsPerWorkgroup,
    maxStorageBuffersPerShaderStage: LIMITS.maxStorageBuffersPerShaderStage, isFallbackAdapter: false, cpu: false,
  };
  const gpu: GpuContext = { device, info, hasF16: false, hasSubgroups: false, hasTimestamps: false, lost: new Promise(() => {}), isLost: () => false };
  return { gpu, counts };
}

/** Records every readback of `device` (a copy of each range read, in order) into `into`, for a counting device's replay. */
export function recordReadbacks(device: GPUDevice, into: Replay): void {
  const create = device.createBuffer.bind(device);
  device.createBuffer = (d: GPUBufferDescriptor) => {
    const b = create(d);
    const get = b.getMappedRange.bind(b);
    b.getMappedRange = (offset?: number, size?: number) => {
      const r = get(offset, size);
      into.push(r.slice(0));
      return r;
    };
    return b;
  };
}
