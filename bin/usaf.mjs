#!/usr/bin/env node
// `npx usaf …`: runs the bundled CLI (dist/cli/usaf.mjs, built by `npm ci`/`npm run build:cli`), building it first if absent.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist', 'cli', 'usaf.mjs');
if (!existsSync(bundle)) execFileSync(process.execPath, [join(root, 'scripts', 'build-cli.mjs')], { cwd: root, stdio: 'inherit' });
await import(pathToFileURL(bundle).href);
