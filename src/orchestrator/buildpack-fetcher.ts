// Where a buildpack comes from: a git URL (https or http, `#ref` for a branch, tag or commit)
// cloned with isomorphic-git into the data dir, or a folder on the server (an absolute path or a
// file:// URL). Heroku's `heroku/NAME` shorthand means the official buildpack on GitHub.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';

/** Longest a git buildpack may take to fetch. */
export const FETCH_TIMEOUT_MS = 120_000;

export type BuildpackLocation = { kind: 'git'; url: string; ref: string | undefined } | { kind: 'dir'; dir: string };

export interface FetchedBuildpack {
  /** As the user wrote it. */
  url: string;
  /** A short name for output: the repository or folder name. */
  name: string;
  /** A folder on this server holding bin/detect, bin/compile (and bin/release). */
  dir: string;
}

/** Parses a buildpack URL, or throws a UserError that says which forms are accepted. */
export function parseBuildpackUrl(url: string): BuildpackLocation {
  const text = url.trim();
  const shorthand = /^heroku\/([a-z0-9-]+)$/.exec(text);
  if (shorthand) return { kind: 'git', url: `https://github.com/heroku/heroku-buildpack-${shorthand[1]}.git`, ref: undefined };
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
    const ref = parsed.hash ? decodeURIComponent(parsed.hash.slice(1)) : undefined;
    parsed.hash = '';
    if (ref !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(ref)) throw new UserError('invalid_buildpack_url', `buildpack ${url}: "${ref}" is not a branch, tag or commit`);
    return { kind: 'git', url: parsed.toString(), ref: ref || undefined };
  }
  throw badUrl(url);
}

export function buildpackName(url: string): string {
  const loc = parseBuildpackUrl(url);
  const base = loc.kind === 'dir' ? path.basename(loc.dir) : path.basename(new URL(loc.url).pathname).replace(/\.git$/, '');
  return base.replace(/[^A-Za-z0-9._-]/g, '-') || 'buildpack';
}

export class BuildpackFetcher {
  private readonly cacheDir: string;

  constructor(cacheDir: string) {
    this.cacheDir = cacheDir;
  }

  /** Makes the buildpack available on this server; rejects with a UserError naming the URL and the reason. */
  async fetch(url: string): Promise<FetchedBuildpack> {
    const loc = parseBuildpackUrl(url);
    const name = buildpackName(url);
    if (loc.kind === 'dir') {
      await checkLayout(url, loc.dir);
      return { url, name, dir: loc.dir };
    }
    const key = createHash('sha256').update(`${loc.url}#${loc.ref ?? ''}`).digest('hex').slice(0, 16);
    const dest = path.join(this.cacheDir, `${name}-${key}`);
    try {
      await withTimeout(this.clone(loc.url, loc.ref, dest), FETCH_TIMEOUT_MS, `fetching ${url} took longer than ${FETCH_TIMEOUT_MS / 1000} s`);
    } catch (e) {
      throw new UserError('buildpack_fetch_failed', `could not fetch buildpack ${url}: ${(e as Error).message}`, {
        cause: e,
        hint: 'check the URL (and #ref) is reachable from the server, or use a buildpack folder on the server (an absolute path or file:// URL)',
      });
    }
    await checkLayout(url, dest);
    return { url, name, dir: dest };
  }

  // A fresh shallow clone into a temp folder, then swapped in, so a failed fetch leaves the last good copy.
  private async clone(url: string, ref: string | undefined, dest: string): Promise<void> {
    const [{ default: git }, { default: http }] = await Promise.all([import('isomorphic-git'), import('isomorphic-git/http/node')]);
    await fsp.mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    const tmp = `${dest}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const isCommit = ref !== undefined && /^[0-9a-f]{40}$/.test(ref);
      await git.clone({ fs, http, dir: tmp, url, ...(ref && !isCommit ? { ref } : {}), singleBranch: !isCommit, ...(isCommit ? {} : { depth: 1 }), noTags: !ref });
      if (isCommit) await git.checkout({ fs, dir: tmp, ref, force: true });
      await fsp.rm(path.join(tmp, '.git'), { recursive: true, force: true });
      await fsp.rm(dest, { recursive: true, force: true });
      // Another build fetching the same buildpack may have swapped its copy in meanwhile: use that.
      await fsp.rename(tmp, dest).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
      });
      log.info('buildpack_fetched', { url, ref, dir: dest });
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }
}

async function checkLayout(url: string, dir: string): Promise<void> {
  const missing: string[] = [];
  for (const f of ['bin/detect', 'bin/compile']) {
    const st = await fsp.stat(path.join(dir, f)).catch(() => undefined);
    if (!st?.isFile()) missing.push(f);
  }
  if (missing.length) {
    throw new UserError('buildpack_invalid', `buildpack ${url} has no ${missing.join(' or ')}${fs.existsSync(dir) ? '' : ` (${dir} does not exist on the server)`}`, {
      hint: 'a buildpack is a folder with bin/detect, bin/compile and bin/release (the Heroku buildpack API)',
    });
  }
}

function badUrl(url: string): UserError {
  return new UserError('invalid_buildpack_url', `"${url}" is not a buildpack URL`, {
    hint: 'use a git URL (https://host/repo.git, optionally #ref), heroku/NAME, a file:// URL or an absolute path on the server',
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}
