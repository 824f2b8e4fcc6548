// Bundles the Node CLI into one self-contained file, dist/cli/usaf.mjs (only dawn.node stays outside).
// WGSL `?raw` imports are inlined as strings, as vite does for the app.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

const rawWgsl = {
  name: 'raw-wgsl',
  setup(b) {
    b.onResolve({ filter: /\.wgsl\?raw$/ }, (a) => ({ path: resolve(dirname(a.importer), a.path.replace(/\?raw$/, '')), namespace: 'wgsl' }));
    b.onLoad({ filter: /.*/, namespace: 'wgsl' }, async (a) => ({ contents: await readFile(a.path, 'utf8'), loader: 'text' }));
  },
};

// The CLI uses @huggingface/transformers only for tokenizers: its image and ONNX runtimes are stubbed out.
const stubRuntimes = {
  name: 'stub-runtimes',
  setup(b) {
    b.onResolve({ filter: /^(sharp|onnxruntime-node|onnxruntime-web|onnxruntime-common)(\/.*)?$/ }, (a) => ({ path: a.path, namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'export default {}; export const InferenceSession = undefined; export const Tensor = undefined; export const env = {};', loader: 'js' }));
    // transformers' Node build loads onnxruntime-node with a runtime require; the tokenizer never touches it.
    b.onLoad({ filter: /transformers\.node\.mjs$/ }, async (a) => ({
      contents: (await readFile(a.path, 'utf8')).replace(/requireFromHere\("onnxruntime-node"\)/g, '{}'),
      loader: 'js',
    }));
  },
};

const entry = process.argv[2] ?? 'src/cli/main.ts';
const outfile = process.argv[3] ?? 'dist/cli/usaf.mjs';
await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: false,
  logLevel: 'warning',
  plugins: [rawWgsl, stubRuntimes],
  // dawn.node is loaded at run time (from the webgpu package, or $WEBGPU_DAWN_NODE).
  external: ['webgpu'],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
