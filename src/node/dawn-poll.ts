// Dawn's Node binding waits for the GPU (onSubmittedWorkDone, mapAsync, pipeline creation) by calling
// setImmediate(tick) again after every tick while a wait is pending: a busy loop on the main thread. On a CPU adapter
// (SwiftShader) that loop takes a core from the driver's own threads: on the 2-core machine a kernel of ~3 s ran 7–9 s,
// with the main thread at ~50 % of a core (`ps -L`). So a tick that follows another by under 2 ms is deferred by 1 ms
// (setTimeout): a wait's first tick still runs at once, a long wait costs ~1,000 cheap ticks a second instead of a core.
// Dawn's ticks are the only native functions handed to setImmediate here; every other caller is left untouched.

const RECENT_MS = 2;
const DEFER_MS = 1;

let installed = false;

function isNative(fn: unknown): boolean {
  return typeof fn === 'function' && Function.prototype.toString.call(fn).includes('[native code]');
}

/** Installs the deferral once per process (Dawn reads globalThis.setImmediate at each tick, so any time works). */
export function throttleDawnPolling(): void {
  if (installed || process.env.USAF_DAWN_POLL === 'busy') return;
  installed = true;
  const immediate = globalThis.setImmediate;
  let last = -Infinity;
  const deferring = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (!isNative(fn)) return immediate(fn, ...args);
    const now = performance.now();
    const recent = now - last < RECENT_MS;
    last = now;
    return recent ? setTimeout(fn, DEFER_MS, ...args) : immediate(fn, ...args);
  }) as unknown as typeof setImmediate;
  Object.assign(deferring, immediate); // keeps setImmediate.__promisify__
  globalThis.setImmediate = deferring;
}
