// Driver noise kept out of the CLI's output, real errors left alone. Two sources, both from native code under Dawn:
// - the Vulkan drivers' window-system code prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
//   when that variable names no directory: quietRuntimeDir() points it at a private one before Dawn loads;
// - Dawn prints a "Warning: Vulkan … required. - While initializing adapter …" block for each Vulkan driver it refuses
//   (e.g. a software driver without a feature it needs) straight to fd 2: the CLI runs itself as a child whose stderr
//   passes through dropAdapterWarnings(), which removes exactly those blocks. USAF_DEBUG=1 shows everything.

import { spawn } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/** XDG_RUNTIME_DIR := a private 0700 directory when it is unset or names no directory. */
export function quietRuntimeDir(): void {
  const cur = process.env.XDG_RUNTIME_DIR;
  try {
    if (cur && statSync(cur).isDirectory()) return;
  } catch {
    // not there: replaced below
  }
  const dir = join(tmpdir(), `usaf-runtime-${userInfo().uid}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

const WARNING = /^Warning: .*$/;
const ADAPTER = /^ - While initializing adapter \(backend=/;
const FRAME = /^ {4}at /;

/**
 * A line filter for a stream of stderr text: drops each block "Warning: …" + " - While initializing adapter (backend=…)"
 * + "    at …" lines + one blank line; passes every other line unchanged. push(text) returns what to print now; end() the rest.
 */
export function dropAdapterWarnings(): { push(text: string): string; end(): string } {
  let partial = '';
  let held: string | null = null; // a "Warning:" line waiting for its next line
  let dropping = false; // inside a dropped block
  const line = (l: string): string => {
    if (dropping) {
      if (FRAME.test(l)) return '';
      dropping = false;
      if (l === '') return '';
    }
    if (held !== null) {
      const w = held;
      held = null;
      if (ADAPTER.test(l)) {
        dropping = true;
        return '';
      }
      return w + '\n' + line(l);
    }
    if (WARNING.test(l)) {
      held = l;
      return '';
    }
    return l + '\n';
  };
  return {
    push(text) {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      return lines.map(line).join('');
    },
    end() {
      const out = (held !== null ? held + '\n' : '') + partial;
      held = null;
      partial = '';
      return out;
    },
  };
}

const CHILD = 'USAF_STDERR_FILTERED';

/**
 * In the CLI's first process: runs the same command line as a child with its stderr filtered, forwards signals, and
 * resolves to the child's exit code. Null where the command should run here (in the child, or with USAF_DEBUG).
 */
export function runWithQuietStderr(): Promise<number> | null {
  if (process.env[CHILD] || process.env.USAF_DEBUG) return null;
  const env = { ...process.env, [CHILD]: '1', ...(process.stderr.isTTY && !process.env.USAF_PROGRESS ? { USAF_PROGRESS: '1' } : {}) };
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: ['inherit', 'inherit', 'pipe'], env });
  const filter = dropAdapterWarnings();
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (t: string) => {
    const out = filter.push(t);
    if (out) process.stderr.write(out);
  });
  // Ctrl-C reaches the whole process group: the child handles it; other signals sent to this process are passed on.
  const forward = (sig: NodeJS.Signals) => () => void child.kill(sig);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, forward(sig));
  return new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`usaf: could not start: ${e.message}\n`);
      resolve(1);
    });
    child.on('close', (code, signal) => {
      const rest = filter.end();
      if (rest) process.stderr.write(rest);
      resolve(code ?? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  });
}
