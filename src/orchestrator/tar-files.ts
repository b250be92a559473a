// Small tar helpers for build containers: a tar made from files in memory and folders on this
// server (modes and symlinks kept, links never followed, .git left out), and the files of a tar
// stream read back.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import tar from 'tar-stream';

export type TarEntry =
  | { name: string; type: 'file'; content: string | Buffer; mode?: number }
  | { name: string; type: 'directory'; mode?: number }
  | { name: string; type: 'tree'; from: string };

/** A tar stream of the entries; a `tree` entry is the folder `from`, copied under `name`. */
export function makeTar(entries: readonly TarEntry[]): Readable {
  const pack = tar.pack();
  const add = (header: Partial<tar.Header> & { name: string }, body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body === undefined) pack.entry(header, done);
      else pack.entry(header, body, done);
    });
  // Every folder is opened once, without following a link, and what is inside it is reached
  // through that open folder (/proc/self/fd/N/NAME), never through its path again: a link
  // swapped in while the copy runs is copied as a link, never followed out of the tree.
  const copyTree = async (from: string, name: string): Promise<void> => {
    const dir = await fsp.open(from, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await copyFolder(dir, name);
    } finally {
      await dir.close();
    }
  };
  const copyFolder = async (dir: fsp.FileHandle, name: string): Promise<void> => {
    const st = await dir.stat();
    await add({ name: name + '/', type: 'directory', mode: st.mode & 0o7777 });
    const here = `/proc/self/fd/${dir.fd}`;
    for (const childName of (await fsp.readdir(here)).sort((a, b) => a.localeCompare(b))) {
      if (childName === '.git') continue;
      const src = `${here}/${childName}`;
      const dst = `${name}/${childName}`;
      const child = await fsp.open(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ELOOP') return 'link' as const;
        if (e.code === 'ENOENT') return 'gone' as const;
        throw e;
      });
      if (child === 'gone') continue;
      if (child === 'link') {
        const linkname = await fsp.readlink(src).catch(() => undefined);
        if (linkname !== undefined) await add({ name: dst, type: 'symlink', linkname, mode: 0o777 });
        continue;
      }
      try {
        const cst = await child.stat();
        if (cst.isDirectory()) await copyFolder(child, dst);
        else if (cst.isFile()) await add({ name: dst, type: 'file', mode: cst.mode & 0o7777 }, await child.readFile());
      } finally {
        await child.close();
      }
    }
  };
  void (async () => {
    for (const e of entries) {
      if (e.type === 'file') await add({ name: e.name, type: 'file', mode: e.mode ?? 0o644 }, Buffer.from(e.content));
      else if (e.type === 'directory') await add({ name: e.name.replace(/\/?$/, '/'), type: 'directory', mode: e.mode ?? 0o755 });
      else await copyTree(e.from, e.name);
    }
    pack.finalize();
  })().catch((e: unknown) => pack.destroy(e as Error));
  return Readable.from(pack);
}

/** The regular files of a tar stream, by name. */
export function readTarFiles(stream: Readable, maxBytes = 1024 * 1024): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    const files = new Map<string, Buffer>();
    let total = 0;
    const extract = tar.extract();
    extract.on('entry', (header, body, next) => {
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => {
        const b = c as Buffer;
        total += b.length;
        if (total > maxBytes) extract.destroy(new Error(`the archive is larger than ${maxBytes} bytes`));
        else chunks.push(b);
      });
      body.on('end', () => {
        if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', () => resolve(files));
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
}

/**
 * A tar stream passed through unchanged, which fails (without passing on the header) when the
 * entry `name` is anything but a regular file: a build that reads `name` reads what was checked,
 * never the target of a link. Reads only the 512-byte headers (ustar names, as tree-archive.ts
 * writes them), skipping each entry's data.
 */
export function requireRegularFile(name: string, refusal: () => Error): Transform {
  let header = Buffer.alloc(0);
  let skip = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let at = 0;
      while (at < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - at);
          skip -= n;
          at += n;
          continue;
        }
        const need = 512 - header.length;
        header = Buffer.concat([header, chunk.subarray(at, at + need)]);
        at += Math.min(need, chunk.length - at);
        if (header.length < 512) break;
        const block = header;
        header = Buffer.alloc(0);
        if (block.every((b) => b === 0)) continue;
        const text = (from: number, to: number) => block.subarray(from, to).toString('utf8').replace(/\0.*$/s, '');
        const prefix = block.subarray(257, 262).toString('latin1') === 'ustar' ? text(345, 500) : '';
        const entry = (prefix ? `${prefix}/` : '') + text(0, 100);
        const type = String.fromCharCode(block[156]!);
        const size = block[124]! & 0x80 ? Number(block.subarray(125, 136).readUIntBE(5, 6)) : parseInt(text(124, 136).trim() || '0', 8);
        if (entry.replace(/^\.\//, '') === name && type !== '0' && type !== '\0') return done(refusal());
        skip = Math.ceil(size / 512) * 512;
      }
      done(null, chunk);
    },
  });
}
