// The build context: a pushed commit's tree as a tar, read from the bare repository.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import tar from 'tar-stream';
import { isUserError } from '../src/errors.ts';
import { ObjectNotFoundError } from '../src/git/object-store.ts';
import { Repository } from '../src/git/repository.ts';
import { treeArchive } from '../src/git/tree-archive.ts';
import { GitFixture } from './helpers/stdio-receive-pack.ts';

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  linkname: string | null;
  mtime: number;
  content: string;
}

async function untar(stream: Readable): Promise<Map<string, TarEntry>> {
  const extract = tar.extract();
  stream.on('error', (e) => extract.destroy(e));
  stream.pipe(extract);
  const entries = new Map<string, TarEntry>();
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const h = entry.header;
    entries.set(h.name, {
      name: h.name,
      type: h.type,
      mode: h.mode,
      linkname: h.linkname ?? null,
      mtime: h.mtime.getTime(),
      content: Buffer.concat(chunks).toString(),
    });
  }
  return entries;
}

describe('tree archive', () => {
  let f: GitFixture;
  beforeEach(async () => {
    f = await GitFixture.create();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  async function pushed(): Promise<{ repo: Repository; head: string }> {
    const r = await f.push(['main']);
    assert.equal(r.code, 0, r.stderr);
    return { repo: await Repository.open(f.repos, 'app', { create: false }), head: await f.git('rev-parse', 'HEAD') };
  }

  test('the tar of a pushed commit has its files, modes, directories and symlink', async () => {
    // A submodule (gitlink) too: its commit lives elsewhere, so it is left out.
    await f.git('update-index', '--add', '--cacheinfo', `160000,${await f.git('rev-parse', 'HEAD')},vendor/lib`);
    await f.git('commit', '-q', '-m', 'with a submodule');
    const { repo, head } = await pushed();
    const entries = await untar(repo.archive(head));

    assert.deepEqual([...entries.keys()].sort(), ['README.md', 'app/', 'app/lib/', 'app/lib/util.js', 'link-to-readme', 'run.sh', 'vendor/']);
    assert.deepEqual(
      { type: entries.get('README.md')?.type, mode: entries.get('README.md')?.mode, content: entries.get('README.md')?.content },
      { type: 'file', mode: 0o644, content: '# demo\n' },
    );
    assert.equal(entries.get('run.sh')?.mode, 0o755);
    assert.equal(entries.get('run.sh')?.content, '#!/bin/sh\necho hello\n');
    assert.equal(entries.get('link-to-readme')?.type, 'symlink');
    assert.equal(entries.get('link-to-readme')?.linkname, 'README.md');
    assert.equal(entries.get('app/')?.type, 'directory');
    assert.equal(entries.get('app/')?.mode, 0o755);
    assert.equal(entries.get('app/lib/util.js')?.content, 'export const x = 1;\n');

    const committed = Number(await f.git('show', '-s', '--format=%ct', head)) * 1000;
    for (const e of entries.values()) assert.equal(e.mtime, committed, `${e.name} carries the commit time`);
  });

  test('the archive matches what git itself lists for the commit', async () => {
    for (let i = 0; i < 30; i++) await f.write(`src/m${i % 5}/file-${i}.txt`, `file ${i}\n`);
    await f.write(`deep/${'d'.repeat(90)}/${'f'.repeat(120)}.txt`, 'a path longer than ustar allows\n');
    await f.commitAll('more files');
    const { repo, head } = await pushed();
    const listed = (await f.bare('ls-tree', '-r', '--name-only', head)).split('\n').sort();
    const files = [...(await untar(treeArchive(repo.gitdir, head))).values()].filter((e) => e.type !== 'directory').map((e) => e.name).sort();
    assert.deepEqual(files, listed);
  });

  test('archiving writes nothing into the bare repository', async () => {
    const { repo, head } = await pushed();
    const before = (await readdir(repo.gitdir)).sort();
    await untar(repo.archive(head));
    assert.deepEqual((await readdir(repo.gitdir)).sort(), before);
    assert.ok(!before.includes('index'));
  });

  test('the same commit gives the same bytes', async () => {
    const { repo, head } = await pushed();
    const read = async () => {
      const chunks: Buffer[] = [];
      for await (const c of repo.archive(head)) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    assert.ok((await read()).equals(await read()));
  });

  test('an unknown commit makes the stream fail with the commit in the message', async () => {
    const { repo } = await pushed();
    await assert.rejects(untar(repo.archive('1'.repeat(40))), /archive of commit 1{40}/);
  });

  test('a consumer that stops early does not leave the walk failing loudly', async () => {
    for (let i = 0; i < 200; i++) await f.write(`bulk/f${i}.txt`, 'x'.repeat(4096));
    await f.commitAll('bulk');
    const { repo, head } = await pushed();
    const stream = repo.archive(head);
    for await (const _chunk of stream) break; // destroys the stream after the first chunk
    assert.ok(stream.destroyed);
  });

  test('readFileAtCommit returns a file, and undefined for a missing path or a directory', async () => {
    const { repo, head } = await pushed();
    assert.equal((await repo.readFileAtCommit(head, 'app/lib/util.js'))?.toString(), 'export const x = 1;\n');
    assert.equal(await repo.readFileAtCommit(head, 'Procfile'), undefined);
    assert.equal(await repo.readFileAtCommit(head, 'app'), undefined);
  });

  test('contents are read by a child process under the caps: an object beyond them is refused with the cap named', async () => {
    const { repo, head } = await pushed();
    const contents = repo.contents({ objectBytes: 10 });
    try {
      await assert.rejects(contents.readFile(head, 'app/lib/util.js'), (e: unknown) => {
        assert.ok(isUserError(e) && e.code === 'git_push_limit', String(e));
        assert.match(e.message, /over the cap of 10 bytes set by berth serve --max-object-size/);
        return true;
      });
      await assert.rejects(untar(contents.archive(head)), /over the cap of 10 bytes set by berth serve --max-object-size/);
      await assert.rejects(contents.readFile('2'.repeat(40), 'Procfile'), (e: unknown) => e instanceof ObjectNotFoundError);
    } finally {
      contents.close();
    }
  });
});
