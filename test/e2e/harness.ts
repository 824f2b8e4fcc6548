// Contract: the e2e harness: test registration, a fresh browser context per test with every request recorded
// (and checked to stay on the app's own origin), page errors collected, screenshots, and waiting helpers.

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import config from '../../playwright.config.ts';

export interface Session {
  context: BrowserContext;
  page: Page;
  /** Every URL requested by the page, its workers and its service worker. */
  requests: string[];
  /** Uncaught page errors and console errors. */
  errors: string[];
}

export interface Env {
  browser: Browser;
  /** The app's URL on the local static server (ends with '/'). */
  baseUrl: string;
  /** A fresh context (own storage, own service worker) and page. */
  open(): Promise<Session>;
  screenshot(page: Page, name: string): Promise<string>;
}

export interface E2eTest {
  name: string;
  run(env: Env): Promise<void>;
  /** This test's time limit in milliseconds (default: the config's timeoutMs). */
  timeoutMs?: number;
}

export const tests: E2eTest[] = [];

/** Where screenshots of the screens are kept (git-ignored, under test-results/). */
export const SCREENS_DIR = 'test-results/screens';

export function test(name: string, run: (env: Env) => Promise<void>, options: { timeoutMs?: number } = {}): void {
  tests.push({ name, run, ...options });
}

/** Builds the Env the runner hands to each test. */
export function makeEnv(browser: Browser, baseUrl: string, sessions: Session[]): Env {
  mkdirSync(config.outputDir, { recursive: true });
  return {
    browser,
    baseUrl,
    async open() {
      const context = await browser.newContext({ viewport: config.viewport, serviceWorkers: 'allow', acceptDownloads: true });
      const requests: string[] = [];
      const errors: string[] = [];
      context.on('request', (r) => requests.push(r.url()));
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console error: ${m.text()}`);
      });
      const s = { context, page, requests, errors };
      sessions.push(s);
      return s;
    },
    async screenshot(page, name) {
      mkdirSync(SCREENS_DIR, { recursive: true });
      const path = `${SCREENS_DIR}/${name}.png`;
      await page.screenshot({ path, fullPage: true });
      return path;
    },
  };
}

/** URLs that left the app's origin (data:, blob: and about: URLs stay in the browser and are allowed). */
export function foreignRequests(requests: readonly string[], baseUrl: string): string[] {
  const origin = new URL(baseUrl).origin;
  return requests.filter((u) => !/^(data|blob|about|chrome-extension):/.test(u) && new URL(u).origin !== origin);
}

/** Waits until the demo model is stored and shown as ready, and its datasets are tokenized. */
/**
 * Reloads the page with the network off. Chromium 150 under Playwright keeps the emulated offline network across a
 * reload (requests fail, the service worker serves the app) but the new document reads navigator.onLine as true and
 * gets no 'offline' event; setting the emulation again tells it.
 */
export async function reloadOffline(context: BrowserContext, page: Page): Promise<void> {
  await context.setOffline(true);
  await page.reload();
  await context.setOffline(false);
  await context.setOffline(true);
}

export async function waitForDemo(page: Page): Promise<void> {
  await page.locator('[data-model-id="usaf-demo-moe"] [data-testid=model-status]', { hasText: 'ready' }).waitFor({ timeout: 120_000 });
  await page.waitForFunction(() => !document.body.textContent?.includes('Starting the engine')
    && !document.body.textContent?.includes('Tokenizing the demo data')
    && !document.body.textContent?.includes('Preparing the built-in demo model'), null, { timeout: 120_000 });
}

export async function gotoScreen(page: Page, screen: 'models' | 'datasets' | 'preset' | 'run' | 'export' | 'try'): Promise<void> {
  await page.click(`nav [data-screen=${screen}]`);
  await page.locator(`nav [data-screen=${screen}][aria-current=page]`).waitFor();
}
