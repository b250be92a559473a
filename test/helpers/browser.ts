// A real browser for page tests: Debian's chromium (/usr/bin/chromium; scripts/provision.sh installs
// it) driven by playwright-core, headless. Host names of the test's domain resolve to 127.0.0.1 in
// the browser itself, so https://berth.DOMAIN:PORT reaches the daemon's proxy as a real browser
// would reach it. Each context is a fresh profile (its own cookies); what the page reports as a
// problem (console errors, uncaught exceptions, CSP violations) is collected for the test to assert.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';
import { ROOT, tempDir } from './daemon.ts';

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
    env: { ...process.env, LD_PRELOAD: noNetlink() },
    timeout: 60_000,
  });
}

let shim: string | undefined;

/**
 * no-netlink.c built once per test process: chromium on the machine whose Docker engine starts the
 * tests' containers would otherwise see each new veth as a network change and fail the requests in
 * flight (a user's browser, on another machine, never sees them).
 */
function noNetlink(): string {
  if (shim) return shim;
  const out = path.join(tempDir('browser-shim'), 'no-netlink.so');
  const built = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', out, path.join(import.meta.dirname, 'no-netlink.c'), '-ldl'], { encoding: 'utf8' });
  if (built.error || built.status !== 0) throw new Error(`building test/helpers/no-netlink.c failed (scripts/provision.sh installs gcc): ${built.error?.message ?? built.stderr}`);
  shim = out;
  return out;
}

/** A fresh profile (no cookies), HTTPS errors ignored (the proxy's certificates come from Pebble's test CA). */
export function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  return browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 }, ...options });
}

export interface PageProblems {
  /** Console errors, uncaught exceptions and CSP violations so far, minus the ones `allowed` matches. */
  list(allowed?: RegExp[]): string[];
}

/** Collects what the page reports as wrong (and requests that failed) from now on. */
export function watchProblems(page: Page): PageProblems {
  const seen: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content Security Policy/i.test(message.text())) seen.push(`console: ${message.text()}${message.location().url ? ` (${message.location().url})` : ''}`);
  });
  page.on('pageerror', (error) => seen.push(`uncaught: ${error.message}`));
  // A request the page did not end itself (leaving a view aborts its streams: ERR_ABORTED).
  page.on('requestfailed', (request) => {
    const reason = request.failure()?.errorText ?? 'failed';
    if (reason !== 'net::ERR_ABORTED') seen.push(`request failed: ${request.method()} ${request.url()} ${reason}`);
  });
  return { list: (allowed = []) => seen.filter((line) => !allowed.some((pattern) => pattern.test(line))) };
}

/** Saves a screenshot (of the whole page, or with `fullPage: false` of the viewport) as test-artifacts/FOLDER/NAME.png; returns its path. */
export async function screenshot(page: Page, folder: string, name: string, options: { fullPage?: boolean } = {}): Promise<string> {
  const file = path.join(ARTIFACTS, folder, `${name}.png`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: options.fullPage ?? true });
  return file;
}

/** True when the page is wider than its viewport (the user would have to scroll sideways). */
export function scrollsSideways(page: Page): Promise<boolean> {
  return page.evaluate<boolean>('document.documentElement.scrollWidth > document.documentElement.clientWidth');
}

/** Waits until an element matching `selector` has text matching `text` (shown or not); a timeout says what the elements had. */
export async function waitForText(page: Page, selector: string, text: RegExp, timeout?: number): Promise<void> {
  try {
    await page.locator(selector).filter({ hasText: text }).first().waitFor({ state: 'attached', ...(timeout === undefined ? {} : { timeout }) });
  } catch (e) {
    const now = await page.locator(selector).allTextContents().catch(() => []);
    throw new Error(`${(e as Error).message}\n${selector} has now: ${JSON.stringify(now).slice(0, 2000)}`, { cause: e });
  }
}
