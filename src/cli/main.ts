// `usaf` command-line entry: dispatches to one module per command; prints a clear message (no stack) for user errors.

import { UsageError } from './args.ts';
import type { Command } from './command.ts';
import { info } from './commands/info.ts';
import { parity } from './commands/parity.ts';
import { evalCmd } from './commands/eval.ts';
import { tokenize } from './commands/tokenize.ts';
import { bench } from './commands/bench.ts';
import { train } from './commands/train.ts';
import { plan } from './commands/plan.ts';
import { quantReportCmd } from './commands/quant-report.ts';
import { importCmd } from './commands/import.ts';
import { runWithQuietStderr } from '../node/quiet.ts';
import { merge } from './commands/merge.ts';
import { generate } from './commands/generate.ts';

const COMMANDS: Command[] = [info, parity, evalCmd, tokenize, train, plan, quantReportCmd, bench, importCmd, merge, generate];

function usage(): string {
  return ['usage: usaf <command> [flags]', '', ...COMMANDS.map((c) => `  ${c.name.padEnd(12)} ${c.summary}`), '', 'usaf <command> --help for its flags'].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    console.error(`usaf: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return cmd.run(rest);
}

// a command runs in a child whose stderr loses Dawn's adapter warnings (src/node/quiet.ts); usage and --help run here
const argv = process.argv.slice(2);
const quiet = COMMANDS.some((c) => c.name === argv[0]) && !argv.includes('--help') ? runWithQuietStderr() : null;
if (quiet) void quiet.then((code) => process.exit(code));
else main(argv).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Error;
    if (err instanceof UsageError) console.error(`usaf: ${err.message}`);
    else console.error(`usaf: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}${process.env.USAF_DEBUG ? '\n' + err?.stack : ''}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
