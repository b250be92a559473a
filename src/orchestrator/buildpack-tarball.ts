// A buildpack published as a tarball (.tgz, .tar.gz, .tar), as herokuish and Heroku's buildpack
// registry serve them: downloaded, unpacked into a folder with modes and symlinks kept, and, when
// the whole buildpack sits in one top-level folder (GitHub's archives), that folder lifted to
// the root. Entries that would land outside the folder are refused.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { publicRequest, type FetchPolicy } from './public-fetch.ts';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

/** The largest tarball berth downloads. */
export const MAX_TARBALL_BYTES = 512 * 1024 * 1024;

/** A failure of the download or of unpacking, in berth's own words (never quoting the answer). */
export class TarballError extends Error {
  override readonly name = 'TarballError';
}

/** Downloads `url` (from where `policy` allows) and unpacks it into `dir` (which must not exist); `signal` ends the download. */
export async function downloadTarball(url: string, dir: string, policy: FetchPolicy, signal?: AbortSignal): Promise<void> {
  const res = await publicRequest(url, { policy, ...(signal ? { signal } : {}) });
  if (res.statusCode !== 200) {
    res.body.resume();
    throw new TarballError(`the server answered HTTP ${res.statusCode}`);
  }
  const gzipped = /\.(tgz|tar\.gz)$/.test(new URL(url).pathname);
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  try {
    await unpack(gzipped ? [res.body, createGunzip()] : [res.body], dir);
  } catch (e) {
    if (e instanceof TarballError) throw e;
    throw new TarballError(`the answer is not a ${gzipped ? 'gzipped ' : ''}tarball`, { cause: e });
  }
  await liftSingleFolder(dir);
}

async function unpack(source: [Readable] | [Readable, Transform], dir: string): Promise<void> {
  const root = path.resolve(dir);
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    void (async () => {
      const target = path.resolve(root, header.name);
      if (target !== root && !target.startsWith(root + path.sep)) throw new TarballError('the tarball has an entry outside its folder');
      // A symlink met on the way could lead a later entry outside the folder.
      const parent = path.dirname(target);
      if (parent !== root && (await fsp.realpath(parent).catch(() => parent)) !== parent) throw new TarballError('the tarball writes through a symlink');
      const mode = (header.mode ?? 0o644) & 0o777;
      if (header.type === 'directory') {
        await fsp.mkdir(target, { recursive: true, mode: mode | 0o700 });
        body.resume();
      } else if (header.type === 'file') {
        await fsp.mkdir(parent, { recursive: true });
        await pipeline(body, fs.createWriteStream(target, { mode }));
      } else if (header.type === 'symlink' && header.linkname) {
        await fsp.mkdir(parent, { recursive: true });
        await fsp.symlink(header.linkname, target);
        body.resume();
      } else {
        body.resume();
      }
    })().then(() => next(), (e: Error) => extract.destroy(e));
  });
  // The cap counts what is downloaded, before gunzip.
  await pipeline([source[0], capped(MAX_TARBALL_BYTES), ...source.slice(1), extract]);
}

async function liftSingleFolder(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'bin'))) return;
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  if (entries.length !== 1 || !entries[0]!.isDirectory()) return;
  const inner = path.join(dir, entries[0]!.name);
  const aside = `${dir}.lift`;
  await fsp.rename(inner, aside);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.rename(aside, dir);
}

function capped(max: number): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      if (total > max) return done(new TarballError(`the tarball is larger than ${max / 1024 ** 2} MiB`));
      done(null, chunk);
    },
  });
}
