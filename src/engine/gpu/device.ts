// One entry to a GPUDevice in the browser (navigator.gpu) or in Node (pass the `GPU` from src/node/gpu.ts).
// Requests the adapter's maximum buffer limits, records its features, and turns device loss into an error.

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The browser says this adapter is a fallback (GPUAdapterInfo.isFallbackAdapter): software or severely limited. */
  isFallbackAdapter: boolean;
  /** Computes on the CPU (isCpuAdapter): a fallback adapter or a software rasterizer. */
  cpu: boolean;
  features: string[];
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxStorageBuffersPerShaderStage: number;
}

export interface GpuContext {
  device: GPUDevice;
  info: GpuInfo;
  hasF16: boolean;
  hasSubgroups: boolean;
  hasTimestamps: boolean;
  /** Resolves (never rejects) with the loss message when the device is lost. */
  lost: Promise<string>;
  isLost(): boolean;
  /** Called after each submit with the kernels it holds (a trace of where GPU time goes; set by the Node CLI's USAF_TRACE_GPU). */
  onSubmit?: (kernels: string, done: Promise<void>) => void;
  /** Submit after every dispatch, so that onSubmit times each kernel alone (USAF_TRACE_GPU=each; slower, for finding hot kernels). */
  submitEach?: boolean;
}

export class GpuUnavailableError extends Error {
  override name = 'GpuUnavailableError';
}

export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
}

/** Storage buffers the widest kernel binds in one stage (experts.wgsl gate_up with its sparse table and Δ). */
export const MIN_STORAGE_BUFFERS = 10;

const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[];

/** Software rasterizers that implement WebGPU on the CPU (Chromium's SwiftShader, Mesa's llvmpipe / lavapipe, WARP). */
const CPU_ADAPTER = /swiftshader|llvmpipe|lavapipe|software|basic render|\bwarp\b|\bcpu\b/i;

/**
 * Whether an adapter runs on the CPU rather than a GPU: a fallback adapter, or a software rasterizer by name (vendor,
 * architecture, device or description). Such an adapter is 100–1000× slower than a GPU.
 */
export function isCpuAdapter(i: Pick<GpuInfo, 'vendor' | 'architecture' | 'device' | 'description'> & { isFallbackAdapter?: boolean }): boolean {
  return !!i.isFallbackAdapter || CPU_ADAPTER.test(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`);
}

export async function createGpu(opts: { gpu?: GPU; powerPreference?: GPUPowerPreference } = {}): Promise<GpuContext> {
  const gpu = opts.gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new GpuUnavailableError('WebGPU is not available here (no navigator.gpu). Use a recent Chrome or Edge, or enable WebGPU.');
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new GpuUnavailableError('WebGPU found no GPU adapter (is hardware acceleration disabled?).');
  const L = adapter.limits;
  if (L.maxStorageBuffersPerShaderStage < MIN_STORAGE_BUFFERS) {
    throw new GpuUnavailableError(`this GPU adapter allows ${L.maxStorageBuffersPerShaderStage} storage buffers per shader stage; the routed-expert kernels bind ${MIN_STORAGE_BUFFERS} (WebGPU's default is 8, most desktop GPUs offer 10 or more)`);
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: L.maxBufferSize,
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: L.maxComputeWorkgroupSizeY,
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
    },
  });
  const ai = adapter.info;
  const named: Omit<GpuInfo, 'cpu'> = {
    vendor: ai?.vendor ?? '',
    architecture: ai?.architecture ?? '',
    device: ai?.device ?? '',
    description: ai?.description ?? '',
    isFallbackAdapter: !!((ai as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: [...device.features].sort(),
    maxBufferSize: device.limits.maxBufferSize,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
  };
  const info: GpuInfo = { ...named, cpu: isCpuAdapter(named) };
  let lostFlag = false;
  const lost = device.lost.then((l) => {
    lostFlag = true;
    return `GPU device lost (${l.reason}): ${l.message}`;
  });
  return {
    device,
    info,
    hasF16: device.features.has('shader-f16'),
    hasSubgroups: device.features.has('subgroups' as GPUFeatureName),
    hasTimestamps: device.features.has('timestamp-query'),
    lost,
    isLost: () => lostFlag,
  };
}
