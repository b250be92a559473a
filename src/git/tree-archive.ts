// A commit's tree as a tar stream (the Docker build context), read straight from the object
// database with isomorphic-git: no checkout, no index file, nothing written into the repository.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import git from 'isomorphic-git';
import tar from 'tar-stream';

/**
 * Streams the tree of `commitOid` (an annotated tag is peeled) as a tar: directories 0755,
 * regular files 0644, executables 0755, symlinks as symlink entries, submodules left out.
 * Every entry carries the commit time, so the same commit always gives the same bytes.
 * The next blob is read only when the consumer has taken the previous one (backpressure);
 * a walk error, such as a missing object, destroys the stream with that error.
 */
export function treeArchive(gitdir: string, commitOid: string): Readable {
  const packer = tar.pack();
  const out = Readable.from(packer, { objectMode: false });
  const cache = {};
  let stopped = false;
  out.once('close', () => {
    stopped = true;
    if (!packer.destroyed) packer.destroy();
  });

  const add = (header: EntryHeader, body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      if (stopped) return reject(new Error('archive consumer went away'));
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body === undefined) packer.entry(header, done);
      else packer.entry(header, body, done);
    });

  const walk = async (treeOid: string, prefix: string, mtime: Date): Promise<void> => {
    const { tree } = await git.readTree({ fs, gitdir, oid: treeOid, cache });
    for (const entry of tree) {
      if (!isSafeName(entry.path)) throw new Error(`tree ${treeOid} has an unsafe entry name ${JSON.stringify(entry.path)}`);
      const name = prefix + entry.path;
      switch (entry.type) {
        case 'tree':
          await add({ name: name + '/', type: 'directory', mode: 0o755, mtime });
          await walk(entry.oid, name + '/', mtime);
          break;
        case 'commit':
          break; // a submodule: its commit is in another repository
        case 'blob': {
          const { blob } = await git.readBlob({ fs, gitdir, oid: entry.oid, cache });
          const content = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
          if (entry.mode === '120000') {
            await add({ name, type: 'symlink', linkname: content.toString('utf8'), mode: 0o777, mtime });
          } else {
            await add({ name, type: 'file', mode: entry.mode === '100755' ? 0o755 : 0o644, mtime }, content);
          }
          break;
        }
        default:
          throw new Error(`tree ${treeOid} has an entry of unknown type ${String(entry.type)}`);
      }
    }
  };

  void (async () => {
    const { commit } = await git.readCommit({ fs, gitdir, oid: commitOid, cache });
    await walk(commit.tree, '', new Date(commit.committer.timestamp * 1000));
    packer.finalize();
  })().catch((e: unknown) => {
    if (stopped) return;
    const error = new Error(`archive of commit ${commitOid}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    out.destroy(error);
  });

  return out;
}

interface EntryHeader {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  mtime: Date;
  linkname?: string;
}

function isSafeName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}
