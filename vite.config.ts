// Vite (app build, dev server) and Vitest (unit + GPU test projects) configuration.
import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { VitePWA } from 'vite-plugin-pwa';
import { fileURLToPath } from 'node:url';

// transformers.js is used for tokenizers only: its ONNX and image runtimes (a 26 MB wasm among them) are replaced by a stub.
const ML_RUNTIME_STUB = fileURLToPath(new URL('./src/worker/stubs/ml-runtimes.ts', import.meta.url));

export default defineConfig({
  base: './',
  resolve: {
    alias: [{ find: /^(onnxruntime-web|onnxruntime-node|sharp)(\/.*)?$/, replacement: ML_RUNTIME_STUB }],
  },
  plugins: [
    svelte(),
    // PWA: manifest + a generated service worker precaching the app shell (JS with the WGSL shaders inlined, CSS,
    // HTML, icons). Models and data are NOT precached: they are imported into OPFS on first launch.
    VitePWA({
      registerType: 'prompt', // never reload the page by itself (a run may be going)
      injectRegister: false, // src/ui/pwa.svelte.ts registers it
      includeAssets: ['icons/icon.svg'],
      manifest: {
        name: 'USAF Web — fine-tune MoE models in your browser',
        short_name: 'USAF Web',
        description: 'Sparse fine-tuning of Mixture-of-Experts language models on WebGPU, offline, nothing leaves the machine.',
        start_url: './',
        scope: './',
        display: 'standalone',
        background_color: '#f6f7f9',
        theme_color: '#2457c5',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icons/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
          { src: 'icons/icon.svg', sizes: 'any', type: 'image/svg+xml' },
        ],
      },
      workbox: {
        globPatterns: ['**/*.{js,mjs,css,html,svg,png,webmanifest,wgsl}'],
        globIgnores: ['models/**', 'data/**', '**/*.wasm'],
        maximumFileSizeToCacheInBytes: 8 * 1024 * 1024,
        navigateFallback: 'index.html',
        navigateFallbackDenylist: [/\/models\//, /\/data\//],
        clientsClaim: true,
        cleanupOutdatedCaches: true,
      },
    }),
  ],
  worker: { format: 'es' },
  build: { target: 'es2022', outDir: 'dist/app', emptyOutDir: true },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'gpu',
          include: ['test/gpu/**/*.test.ts'],
          environment: 'node',
          // SwiftShader already uses every core: run GPU test files one at a time.
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
