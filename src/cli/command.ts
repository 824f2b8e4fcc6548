// A CLI command: name, one-line summary, flags, and run(argv) → exit code.
import { helpText, parseArgs, UsageError, type FlagSpec, type Flags } from './args.ts';

export interface Command {
  name: string;
  summary: string;
  run(argv: string[]): Promise<number>;
}

/** Builds a command from its flag table; `--help` prints the table. */
export function command(name: string, summary: string, flags: Record<string, FlagSpec>, body: (f: Flags, positional: string[]) => Promise<number>): Command {
  const all = { ...flags, help: { type: 'boolean', help: 'print this help' } as FlagSpec };
  return {
    name,
    summary,
    async run(argv) {
      const { flags: f, positional } = parseArgs(argv, all, process.env);
      if (f.help) {
        console.log(helpText(name, summary, flags));
        return 0;
      }
      return body(f, positional);
    },
  };
}

export function str(f: Flags, name: string): string {
  const v = f[name];
  if (typeof v !== 'string' || !v) throw new UsageError(`--${name} is required`);
  return v;
}

export function num(f: Flags, name: string): number | undefined {
  const v = f[name];
  return typeof v === 'number' ? v : undefined;
}
