// Browser end-to-end tests: how Debian's Chromium is launched (WebGPU on SwiftShader, no network beyond the app's
// own server) and where results go. Read by scripts/e2e.mjs (a small runner: @playwright/test is not a dependency).

import type { LaunchOptions } from 'playwright-core';

export interface E2eConfig {
  testDir: string;
  outputDir: string;
  /** Per test, milliseconds. */
  timeoutMs: number;
  viewport: { width: number; height: number };
  launch: LaunchOptions;
}

const config: E2eConfig = {
  testDir: 'test/e2e',
  outputDir: 'test-results/e2e',
  timeoutMs: 180_000,
  viewport: { width: 1280, height: 800 },
  launch: {
    executablePath: process.env.USAF_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      // WebGPU through SwiftShader (Vulkan on the CPU): gives navigator.gpu an adapter on machines without a GPU.
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      '--use-angle=swiftshader',
      '--use-webgpu-adapter=swiftshader',
      // Nothing but the app: no background traffic, and no host resolves except the local test server.
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-default-apps',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  },
};

export default config;
