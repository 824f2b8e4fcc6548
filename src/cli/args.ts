// Command-line flags: `--name value`, `--flag` (boolean) and positional words; every flag may also come from
// an environment variable (the seed's names: FRAC, STEPS, LR_PEAK, …) when the command declares it.

export interface FlagSpec {
  type: 'string' | 'number' | 'boolean';
  env?: string;
  default?: string | number | boolean;
  help: string;
}

export type Flags = Record<string, string | number | boolean | undefined>;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>, env: Record<string, string | undefined> = {}): { flags: Flags; positional: string[] } {
  const flags: Flags = Object.create(null) as Flags;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    let [name, value] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    // own keys only: `--__proto__`, `--constructor` and the like are unknown flags, not Object.prototype's members
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec) throw new UsageError(`unknown flag --${name}. Known: ${Object.keys(specs).map((k) => '--' + k).join(' ')}`);
    if (spec.type === 'boolean') {
      flags[name] = value === undefined ? true : !['0', 'false', 'no'].includes(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    flags[name] = convert(name, spec, value);
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (flags[name] !== undefined) continue;
    const ev = spec.env ? env[spec.env] : undefined;
    if (ev !== undefined && ev !== '') flags[name] = convert(name, spec, ev, spec.env);
    else if (spec.default !== undefined) flags[name] = spec.default;
    else if (spec.type === 'boolean') flags[name] = false; // an absent switch is off
  }
  return { flags, positional };
}

function convert(name: string, spec: FlagSpec, value: string, from?: string): string | number | boolean {
  if (spec.type === 'string') return value;
  if (spec.type === 'boolean') return !['0', 'false', 'no', ''].includes(value);
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`${from ? `$${from}` : `--${name}`} must be a number, got "${value}"`);
  return n;
}

export function helpText(command: string, summary: string, specs: Record<string, FlagSpec>): string {
  const lines = [`usaf ${command}: ${summary}`, ''];
  for (const [name, s] of Object.entries(specs)) {
    const d = s.default !== undefined ? ` (default ${s.default})` : '';
    const e = s.env ? ` [env ${s.env}]` : '';
    lines.push(`  --${name}${s.type === 'boolean' ? '' : ' <' + s.type + '>'}  ${s.help}${d}${e}`);
  }
  return lines.join('\n');
}
