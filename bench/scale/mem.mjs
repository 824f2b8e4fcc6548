// Host memory of a process tree, polled from /proc: the peak of the summed resident set (RSS, what the acceptance
// uses; it counts pages shared between processes once per process, so it over-states a multi-process browser) and of the
// summed proportional set (PSS, shared pages split between their users), plus the kernel's own high-water mark (VmHWM)
// of each process seen. Linux only.

import { readdirSync, readFileSync } from 'node:fs';

function children() {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch { /* gone */ }
  }
  return kids;
}

/** The child of `ppid` whose command line contains `arg` (null when none). */
export function findProcess(ppid, arg) {
  for (const pid of children().get(ppid) ?? []) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arg)) return pid;
    } catch { /* gone */ }
  }
  return null;
}

function tree(root) {
  const kids = children();
  const out = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop();
    out.push(p);
    todo.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** The kB fields of /proc/<pid>/status, in bytes (one read a poll: the fields are cheap counters). */
function status(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), shmem: kb('RssShmem'), hwm: kb('VmHWM') };
}

/**
 * Chromium's process type (gpu-process, renderer, utility:<sub-type>; the browser has none: "browser"), else the program's
 * name; read once per process (reading another process's cmdline takes its mmap lock).
 */
const kinds = new Map();
function kind(pid) {
  if (!kinds.has(pid)) kinds.set(pid, kindOf(pid));
  return kinds.get(pid);
}

function kindOf(pid) {
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '); // Chromium rewrites it as one string
  const t = /--type=(\S+)/.exec(cmd)?.[1];
  if (!t) return /chrom/.test(cmd.split(' ')[0] ?? '') ? 'browser' : (cmd.split(' ')[0] ?? '').split('/').pop() || String(pid);
  const sub = /--utility-sub-type=(\S+)/.exec(cmd)?.[1];
  return sub ? `${t}:${sub.split('.').pop()}` : t;
}

function pss(pid) {
  const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Starts polling the tree below `rootPid` every `ms` (PSS every `pssMs`: reading smaps_rollup takes the target's mmap
 * lock and walks its page tables, which stalls a multi-GB process; a full-width Chromium journey polled as before (PSS
 * every 5 s, five status reads a process a second) ran its import in 206 s against 123 s unpolled, on a machine with
 * other load (bench/export/app.mjs, SAMPLER=1): so PSS once a minute and one status read a process a poll; 0 = never). `phase(name)` starts a new phase (peaks are kept per phase and
 * overall); `stop()` returns {peak_rss_sum, peak_pss_sum, peak_hwm_max, processes_seen, samples, phases}.
 */
export function sampleTree(rootPid, { ms = 1000, pssMs = 60_000 } = {}) {
  let lastPss = -Infinity;
  const phases = {};
  let cur = null;
  const all = { peak_rss_sum: 0, peak_pss_sum: 0, peak_hwm_max: 0, samples: 0 };
  const seen = new Set();
  const hwm = new Map();
  const bump = (o, k, v) => { if (!(v <= o[k])) o[k] = v; }; // a key not there yet takes v
  const poll = () => {
    let rss = 0;
    let ps = 0;
    // RSS split: anonymous (heaps, SwiftShader's GPU memory), file-backed (mapped files: reclaimable page cache), shared
    // memory (counted once per process that maps it), and per process kind
    const split = { anon: 0, file: 0, shmem: 0 };
    const byKind = {};
    const withPss = pssMs > 0 && performance.now() - lastPss >= pssMs;
    if (withPss) lastPss = performance.now();
    for (const pid of tree(rootPid)) {
      try {
        const st = status(pid);
        const r = st.rss;
        rss += r;
        split.anon += st.anon;
        split.file += st.file;
        split.shmem += st.shmem;
        const k = kind(pid);
        byKind[k] = (byKind[k] ?? 0) + r;
        hwm.set(pid, st.hwm);
        if (withPss) ps += pss(pid);
        seen.add(pid);
      } catch { /* exited between listing and reading */ }
    }
    const h = Math.max(0, ...hwm.values());
    // a coarse timeline of the current phase (with the PSS samples): when each process kind peaks, beside mark()s
    if (withPss && cur) {
      const t = phases[cur].timeline ??= [];
      t.push({ t_s: +((performance.now() - t0) / 1000).toFixed(1), rss, pss: ps, by_kind: Object.fromEntries(Object.entries(byKind).filter(([, v]) => v > 200e6)) }); // bytes
      if (t.length > 400) t.splice(0, t.length, ...t.filter((_, i) => i % 2 === 0)); // keep it short: every other sample
    }
    for (const o of cur ? [all, phases[cur]] : [all]) {
      bump(o, 'peak_rss_sum', rss);
      bump(o, 'peak_pss_sum', ps);
      bump(o, 'peak_hwm_max', h);
      bump(o, 'peak_rss_anon_sum', split.anon);
      bump(o, 'peak_rss_file_sum', split.file);
      bump(o, 'peak_rss_shmem_sum', split.shmem);
      o.peak_rss_by_kind ??= {};
      for (const [k, v] of Object.entries(byKind)) bump(o.peak_rss_by_kind, k, v);
      o.samples++;
    }
  };
  const t0 = performance.now();
  const timer = setInterval(poll, ms);
  poll();
  return {
    phase(name) {
      poll();
      hwm.clear(); // a process's VmHWM covers its whole life: per phase it only counts for processes polled in it
      cur = name;
      phases[name] = { peak_rss_sum: 0, peak_pss_sum: 0, peak_hwm_max: 0, samples: 0 };
      poll();
    },
    /** Notes an event (e.g. the app's set-up phase) in the current phase's timeline. */
    mark(label) {
      if (!cur) return;
      (phases[cur].marks ??= []).push({ t_s: +((performance.now() - t0) / 1000).toFixed(1), label });
    },
    /** The peaks so far of phase `name` (null if there is none). */
    peaks(name) {
      poll();
      return phases[name] ? { ...phases[name] } : null;
    },
    stop() {
      poll();
      clearInterval(timer);
      return { ...all, processes_seen: seen.size, phases };
    },
  };
}
