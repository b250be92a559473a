// A real browser for page tests: Debian's chromium (/usr/bin/chromium; scripts/provision.sh installs
// it) driven by playwright-core, headless. Host names of the test's domain resolve to 127.0.0.1 in
// the browser itself, so https://berth.DOMAIN:PORT reaches the daemon's proxy as a real browser
// would reach it. Each context is a fresh profile (its own cookies); what the page reports as a
// problem (console errors, uncaught exceptions, CSP violations) is collected for the test to assert.
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { ROOT } from './daemon.ts';

export type { Browser, BrowserContext, Page };

export const CHROMIUM = '/usr/bin/chromium';
/** Where tests keep screenshots of the pages (gitignored). */
export const ARTIFACTS = path.join(ROOT, 'test-artifacts');

export interface LaunchOptions {
  /** Host names (`*.example.test` allowed) that resolve to 127.0.0.1 in this browser. */
  hosts?: string[];
}

/**
 * Starts chromium. Close it with `browser.close()` in the test's `after`; if the test process ends
 * first (a failure, a timeout), playwright's exit handler kills the browser's process group and
 * removes its temporary profile (it does both synchronously at exit).
 */
export async function launchBrowser(options: LaunchOptions = {}): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/provision.sh as root (it installs Debian's chromium)`);
  const rules = (options.hosts ?? []).map((host) => `MAP ${host} 127.0.0.1`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--no-proxy-server', ...(rules.length ? [`--host-resolver-rules=${rules.join(', ')}`] : [])],
    timeout: 60_000,
  });
}

/** A fresh profile (no cookies), HTTPS errors ignored (the proxy's certificates come from Pebble's test CA). */
export function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  return browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 }, ...options });
}

export interface PageProblems {
  /** Console errors, uncaught exceptions and CSP violations so far, minus the ones `allowed` matches. */
  list(allowed?: RegExp[]): string[];
}

/** Collects what the page reports as wrong from now on. */
export function watchProblems(page: Page): PageProblems {
  const seen: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content Security Policy/i.test(message.text())) seen.push(`console: ${message.text()}${message.location().url ? ` (${message.location().url})` : ''}`);
  });
  page.on('pageerror', (error) => seen.push(`uncaught: ${error.message}`));
  return { list: (allowed = []) => seen.filter((line) => !allowed.some((pattern) => pattern.test(line))) };
}

/** Saves a full-page screenshot as test-artifacts/FOLDER/NAME.png and returns its path. */
export async function screenshot(page: Page, folder: string, name: string): Promise<string> {
  const file = path.join(ARTIFACTS, folder, `${name}.png`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** True when the page is wider than its viewport (the user would have to scroll sideways). */
export function scrollsSideways(page: Page): Promise<boolean> {
  return page.evaluate<boolean>('document.documentElement.scrollWidth > document.documentElement.clientWidth');
}

/** Waits until an element matching `selector` has text matching `text` (shown or not). */
export function waitForText(page: Page, selector: string, text: RegExp, timeout?: number): Promise<void> {
  return page.locator(selector).filter({ hasText: text }).first().waitFor({ state: 'attached', ...(timeout === undefined ? {} : { timeout }) });
}
