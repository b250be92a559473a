// Small tar helpers for build containers: a tar made from files in memory and folders on this
// server (modes and symlinks kept, .git left out), and the files of a tar stream read back.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
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
  const copyTree = async (from: string, name: string): Promise<void> => {
    const st = await fsp.stat(from);
    await add({ name: name + '/', type: 'directory', mode: st.mode & 0o7777 });
    for (const child of (await fsp.readdir(from, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (child.name === '.git') continue;
      const src = path.join(from, child.name);
      const dst = `${name}/${child.name}`;
      if (child.isDirectory()) await copyTree(src, dst);
      else if (child.isSymbolicLink()) await add({ name: dst, type: 'symlink', linkname: await fsp.readlink(src), mode: 0o777 });
      else if (child.isFile()) {
        const cst = await fsp.stat(src);
        await add({ name: dst, type: 'file', mode: cst.mode & 0o7777 }, await fsp.readFile(src));
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
