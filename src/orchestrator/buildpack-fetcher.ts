// Where a buildpack comes from: a git URL (https or http, `#ref` for a branch, tag or commit)
// cloned with isomorphic-git, a tarball URL (.tgz, .tar.gz, .tar) downloaded and unpacked, or a
// folder on the server (an absolute path or a file:// URL). Heroku's `heroku/NAME` shorthand
// means the official buildpack on GitHub. A fetched buildpack is kept in the data dir, one copy
// per URL#ref: builds use that copy without asking the network again; `update` fetches it anew
// and keeps the last good copy when that fails.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { redactUrl, redactUrlsIn } from '../redact.ts';
import { downloadTarball } from './buildpack-tarball.ts';
import { FetchRefused, PUBLIC_ONLY, publicRequest, type FetchPolicy } from './public-fetch.ts';

/** Longest a buildpack may take to fetch. */
export const FETCH_TIMEOUT_MS = 120_000;

export type BuildpackLocation =
  | { kind: 'git'; url: string; ref: string | undefined }
  | { kind: 'tarball'; url: string }
  | { kind: 'dir'; dir: string };

export interface FetchedBuildpack {
  /** As the user wrote it. */
  url: string;
  /** A short name for output: the repository, tarball or folder name. */
  name: string;
  /** A folder on this server holding bin/detect, bin/compile (and bin/release). */
  dir: string;
  /** When this copy was fetched; undefined for a folder on the server. */
  fetchedAt?: Date;
  /** The copy was already on this server: nothing was fetched. */
  cached: boolean;
  /** Set when fetching anew failed and this is the last good copy: why the fetch failed. */
  failure?: string;
}

/** Official buildpacks whose repository is not heroku-buildpack-NAME. */
const SHORTHAND_REPOSITORIES: Record<string, string> = { jvm: 'heroku-buildpack-jvm-common' };

/** Parses a buildpack URL, or throws a UserError that says which forms are accepted. */
export function parseBuildpackUrl(url: string): BuildpackLocation {
  const text = url.trim();
  const shorthand = /^heroku\/([a-z0-9-]+)(?:#(.*))?$/.exec(text);
  if (shorthand) {
    const repo = SHORTHAND_REPOSITORIES[shorthand[1]!] ?? `heroku-buildpack-${shorthand[1]}`;
    return { kind: 'git', url: `https://github.com/heroku/${repo}.git`, ref: checkRef(url, shorthand[2]) };
  }
  if (text.startsWith('/')) return { kind: 'dir', dir: path.normalize(text) };
  if (text.startsWith('file://')) {
    const dir = decodeURIComponent(new URL(text).pathname);
    return { kind: 'dir', dir: path.normalize(dir) };
  }
  if (/^https?:\/\//.test(text)) {
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      throw badUrl(url);
    }
    if (/\.(tgz|tar\.gz|tar)$/.test(parsed.pathname)) return { kind: 'tarball', url: parsed.toString() };
    const ref = parsed.hash ? decodeURIComponent(parsed.hash.slice(1)) : undefined;
    parsed.hash = '';
    return { kind: 'git', url: parsed.toString(), ref: checkRef(url, ref) };
  }
  throw badUrl(url);
}

export function buildpackName(url: string): string {
  const loc = parseBuildpackUrl(url);
  const base = loc.kind === 'dir' ? path.basename(loc.dir) : path.basename(new URL(loc.url).pathname).replace(/\.(git|tgz|tar\.gz|tar)$/, '');
  return base.replace(/[^A-Za-z0-9._-]/g, '-') || 'buildpack';
}

export class BuildpackFetcher {
  private readonly cacheDir: string;
  private readonly timeoutMs: number;
  private readonly policy: FetchPolicy;
  /** One fetch per copy at a time; a second caller waits for the first one's result. */
  private readonly inFlight = new Map<string, Promise<FetchedBuildpack>>();

  /** `policy`: where fetches may go (public addresses, and the hosts of --fetch-allow-host). */
  constructor(cacheDir: string, options: { timeoutMs?: number; policy?: FetchPolicy } = {}) {
    this.cacheDir = cacheDir;
    this.timeoutMs = options.timeoutMs ?? FETCH_TIMEOUT_MS;
    this.policy = options.policy ?? PUBLIC_ONLY;
  }

  /** The buildpack on this server: the kept copy when there is one, else fetched now. Rejects with a UserError naming the URL and the reason. */
  async fetch(url: string): Promise<FetchedBuildpack> {
    const loc = parseBuildpackUrl(url);
    const name = buildpackName(url);
    if (loc.kind === 'dir') {
      await checkLayout(url, loc.dir);
      return { url, name, dir: loc.dir, cached: false };
    }
    const copy = this.copyOf(loc, name);
    const kept = await this.kept(url, name, copy);
    if (kept) return kept;
    return this.once(copy.dir, () => this.download(url, loc, name, copy));
  }

  /**
   * Fetches the buildpack anew (buildpacks:update). When that fails and a copy was kept, the copy
   * stays in use and the result says why the fetch failed; without one, it rejects.
   */
  async update(url: string): Promise<FetchedBuildpack> {
    const loc = parseBuildpackUrl(url);
    const name = buildpackName(url);
    if (loc.kind === 'dir') return this.fetch(url);
    const copy = this.copyOf(loc, name);
    try {
      return await this.once(copy.dir, () => this.download(url, loc, name, copy));
    } catch (e) {
      const kept = await this.kept(url, name, copy);
      if (!kept) throw e;
      return { ...kept, failure: (e as Error).message.replace(/^could not fetch buildpack \S+: /, '') };
    }
  }

  /** Records the buildpack URLs an app's build used, for `buildpacks:update APP`. */
  async remember(app: string, urls: readonly string[]): Promise<void> {
    const file = path.join(this.cacheDir, 'apps', `${app}.json`);
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify({ urls }) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  }

  /** The buildpack URLs the app's last build used (empty before its first build). */
  async remembered(app: string): Promise<string[]> {
    try {
      const parsed = JSON.parse(await fsp.readFile(path.join(this.cacheDir, 'apps', `${app}.json`), 'utf8')) as { urls?: unknown };
      return Array.isArray(parsed.urls) ? parsed.urls.filter((u): u is string => typeof u === 'string') : [];
    } catch {
      return [];
    }
  }

  /** The URL of every buildpack with a copy kept on this server. */
  async keptUrls(): Promise<string[]> {
    const names = await fsp.readdir(this.cacheDir).catch(() => [] as string[]);
    const urls: string[] = [];
    for (const n of names.filter((n) => n.endsWith('.json')).sort()) {
      const meta = await readMeta(path.join(this.cacheDir, n));
      if (meta && fs.existsSync(path.join(this.cacheDir, n.slice(0, -'.json'.length)))) urls.push(meta.url);
    }
    return urls;
  }

  private copyOf(loc: Exclude<BuildpackLocation, { kind: 'dir' }>, name: string): { dir: string; meta: string } {
    const id = loc.kind === 'git' ? `${loc.url}#${loc.ref ?? ''}` : loc.url;
    const dir = path.join(this.cacheDir, `${name}-${createHash('sha256').update(id).digest('hex').slice(0, 16)}`);
    return { dir, meta: `${dir}.json` };
  }

  private async kept(url: string, name: string, copy: { dir: string; meta: string }): Promise<FetchedBuildpack | undefined> {
    const st = await fsp.stat(copy.dir).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    const meta = await readMeta(copy.meta);
    return { url, name, dir: copy.dir, fetchedAt: meta ? new Date(meta.fetchedAt) : st.mtime, cached: true };
  }

  private once(key: string, fetch: () => Promise<FetchedBuildpack>): Promise<FetchedBuildpack> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const p = fetch().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
    return p;
  }

  // Fetched into a temp folder, checked, then swapped in: a failed fetch leaves the last good copy.
  private async download(url: string, loc: Exclude<BuildpackLocation, { kind: 'dir' }>, name: string, copy: { dir: string; meta: string }): Promise<FetchedBuildpack> {
    await fsp.mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    const tmp = `${copy.dir}.${randomBytes(4).toString('hex')}.tmp`;
    const old = `${copy.dir}.${randomBytes(4).toString('hex')}.old`;
    try {
      try {
        // A fetch past the timeout is ended, not left to trickle into a folder removed below.
        const abort = new AbortController();
        const work = loc.kind === 'git' ? clone(loc.url, loc.ref, tmp, this.policy, abort.signal) : downloadTarball(loc.url, tmp, this.policy, abort.signal);
        await withTimeout(work, this.timeoutMs, `fetching ${redactUrl(url)} took longer than ${this.timeoutMs / 1000} s`, abort);
      } catch (e) {
        throw new UserError('buildpack_fetch_failed', `could not fetch buildpack ${redactUrl(url)}: ${redactUrlsIn(fetchFailure(e))}`, {
          cause: e,
          hint: 'check the URL (and #ref) is reachable from the server (an admin may also set a buildpack folder on the server)',
        });
      }
      await checkLayout(url, tmp);
      const fetchedAt = new Date();
      await fsp.rename(copy.dir, old).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      await fsp.rename(tmp, copy.dir).catch((e: NodeJS.ErrnoException) => {
        // Another process swapped its fresh copy in meanwhile: that one is as good.
        if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
      });
      await fsp.writeFile(copy.meta, JSON.stringify({ url, fetchedAt: fetchedAt.toISOString() }) + '\n', { mode: 0o600 });
      log.info('buildpack_fetched', { url: redactUrl(url), dir: copy.dir });
      return { url, name, dir: copy.dir, fetchedAt, cached: false };
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.rm(old, { recursive: true, force: true });
    }
  }
}

async function clone(url: string, ref: string | undefined, dir: string, policy: FetchPolicy, signal: AbortSignal): Promise<void> {
  const { default: git } = await import('isomorphic-git');
  const http = gitHttp(policy, signal);
  const isCommit = ref !== undefined && /^[0-9a-f]{40}$/.test(ref);
  await git.clone({ fs, http, dir, url, ...(ref && !isCommit ? { ref } : {}), singleBranch: !isCommit, ...(isCommit ? {} : { depth: 1 }), noTags: !ref });
  if (isCommit) await git.checkout({ fs, dir, ref, force: true });
  await fsp.rm(path.join(dir, '.git'), { recursive: true, force: true });
}

// isomorphic-git's HTTP client, on publicRequest: every address checked, redirects included.
function gitHttp(policy: FetchPolicy, signal: AbortSignal): import('isomorphic-git').HttpClient {
  return {
    async request({ url, method, headers, body }) {
      const chunks: Uint8Array[] = [];
      for await (const chunk of body ?? []) chunks.push(chunk);
      const res = await publicRequest(url, { policy, signal, ...(method ? { method } : {}), ...(headers ? { headers } : {}), ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
      return { url: res.url, method: method ?? 'GET', statusCode: res.statusCode, statusMessage: '', headers: flatHeaders(res.headers), body: res.body[Symbol.asyncIterator]() as AsyncIterableIterator<Uint8Array> };
    },
  };
}

function flatHeaders(headers: import('node:http').IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
  return flat;
}

// Why a fetch failed, in words that never quote the remote's answer (its body or reason phrase):
// the pusher chose the URL, and the answer may come from somewhere only the server can reach.
function fetchFailure(e: unknown): string {
  const err = e as Error & { code?: string; data?: { statusCode?: number } };
  if (err instanceof FetchRefused) return err.message;
  if (err.code === 'HttpError') return `the server answered HTTP ${err.data?.statusCode ?? '(no status)'}`;
  if (err.code === 'SmartHttpError') return 'the answer is not a git repository (no smart HTTP answer)';
  if (err.code === 'NotFoundError' || err.code === 'EmptyServerResponseError') return err.message;
  if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return `the connection failed (${err.code})`;
  if (err.code === 'CERT_HAS_EXPIRED' || err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || err.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `its TLS certificate was refused (${err.code})`;
  if (err.name === 'TarballError' || /took longer than/.test(err.message)) return err.message;
  return `the answer could not be read as a buildpack${err.code ? ` (${err.code})` : ''}`;
}

async function readMeta(file: string): Promise<{ url: string; fetchedAt: string } | undefined> {
  try {
    const meta = JSON.parse(await fsp.readFile(file, 'utf8')) as { url?: unknown; fetchedAt?: unknown };
    return typeof meta.url === 'string' && typeof meta.fetchedAt === 'string' ? { url: meta.url, fetchedAt: meta.fetchedAt } : undefined;
  } catch {
    return undefined;
  }
}

async function checkLayout(url: string, dir: string): Promise<void> {
  const missing: string[] = [];
  for (const f of ['bin/detect', 'bin/compile']) {
    const st = await fsp.stat(path.join(dir, f)).catch(() => undefined);
    if (!st?.isFile()) missing.push(f);
  }
  if (missing.length) {
    throw new UserError('buildpack_invalid', `buildpack ${redactUrl(url)} has no ${missing.join(' or ')}${fs.existsSync(dir) ? '' : ` (${dir} does not exist on the server)`}`, {
      hint: 'a buildpack is a folder with bin/detect, bin/compile and bin/release (the Heroku buildpack API)',
    });
  }
}

function checkRef(url: string, ref: string | undefined): string | undefined {
  if (ref !== undefined && ref !== '' && !/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(ref)) throw new UserError('invalid_buildpack_url', `buildpack ${redactUrl(url)}: "${ref}" is not a branch, tag or commit`);
  return ref || undefined;
}

function badUrl(url: string): UserError {
  return new UserError('invalid_buildpack_url', `"${redactUrl(url)}" is not a buildpack URL`, {
    hint: 'use a git URL (https://host/repo.git, optionally #ref), heroku/NAME, a tarball URL (.tgz, .tar.gz, .tar), or (an admin, with buildpacks:set) a file:// URL or an absolute path on the server',
  });
}

/** `p`, or past `ms` an error with `message` once `abort` has ended the work and it has settled. */
async function withTimeout<T>(p: Promise<T>, ms: number, message: string, abort: AbortController): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  try {
    const first = await Promise.race([p.then((value) => ({ value })), late]);
    if (first !== 'late') return first.value;
  } finally {
    clearTimeout(timer);
  }
  abort.abort();
  await p.catch(() => undefined);
  throw new Error(message);
}
