// A commit's tree as a tar stream (the Docker build context), read straight from the object
// database one object at a time: no checkout, no index file, nothing written into the repository.
// The daemon runs it in a child process (object-reader.ts), never on its main thread.
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { ObjectStore, parseCommit, parseTree, type ReadLimits } from './object-store.ts';

/**
 * Streams the tree of `commitOid` (an annotated tag is peeled) as a tar: directories 0755,
 * regular files 0644, executables 0755, symlinks as symlink entries, submodules left out.
 * Every entry carries the commit time, so the same commit always gives the same bytes.
 * The next blob is read only when the consumer has taken the previous one (backpressure);
 * a walk error, such as a missing object, destroys the stream with that error.
 */
export function treeArchive(gitdir: string, commitOid: string, limits?: Partial<ReadLimits>): Readable {
  const packer = tar.pack();
  const out = Readable.from(packer, { objectMode: false });
  const store = new ObjectStore(gitdir, limits);
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
    const tree = parseTree(await store.expect(treeOid, 'tree'));
    for (const entry of tree) {
      if (!isSafeName(entry.name)) throw new Error(`tree ${treeOid} has an unsafe entry name ${JSON.stringify(entry.name)}`);
      const name = prefix + entry.name;
      switch (entry.type) {
        case 'tree':
          await add({ name: name + '/', type: 'directory', mode: 0o755, mtime });
          await walk(entry.oid, name + '/', mtime);
          break;
        case 'commit':
          break; // a submodule: its commit is in another repository
        case 'blob': {
          const content = await store.expect(entry.oid, 'blob');
          if (entry.mode === '120000') {
            await add({ name, type: 'symlink', linkname: content.toString('utf8'), mode: 0o777, mtime });
          } else {
            await add({ name, type: 'file', mode: entry.mode === '100755' ? 0o755 : 0o644, mtime }, content);
          }
          break;
        }
      }
    }
  };

  void (async () => {
    const commit = parseCommit(await store.expect(commitOid, 'commit'));
    await walk(commit.tree, '', new Date(commit.committerTime * 1000));
    packer.finalize();
  })()
    .catch((e: unknown) => {
      if (stopped) return;
      const error = new Error(`archive of commit ${commitOid}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      out.destroy(error);
    })
    .finally(() => store.close());

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
