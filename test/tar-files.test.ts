// makeTar's copy of a folder on this server (a directory buildpack) never follows a link out of
// the tree, even when a link is swapped in while the copy runs: a real race, with a process this
// test starts flipping entries of the tree between real files and folders and links to a folder
// standing in for berth's data dir.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { makeTar } from '../src/orchestrator/tar-files.ts';
import { tempDir } from './helpers/temp.ts';

interface Entry {
  name: string;
  type: string;
  linkname?: string;
  content: Buffer;
}

function entriesOf(stream: Readable): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: Entry[] = [];
    const extract = tar.extract();
    extract.on('entry', (header, body, next) => {
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => void chunks.push(c as Buffer));
      body.on('end', () => {
        entries.push({ name: header.name, type: header.type ?? 'file', ...(header.linkname ? { linkname: header.linkname } : {}), content: Buffer.concat(chunks) });
        next();
      });
    });
    extract.on('finish', () => resolve(entries));
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
}

test('a folder is copied with its modes and links, and .git left out', async () => {
  const dir = tempDir('tar-files');
  fs.mkdirSync(path.join(dir, 'bp', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bp', '.git'));
  fs.writeFileSync(path.join(dir, 'bp', 'bin', 'compile'), '#!/bin/sh\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'bp', '.git', 'HEAD'), 'ref\n');
  fs.symlinkSync('compile', path.join(dir, 'bp', 'bin', 'detect'));
  const entries = await entriesOf(makeTar([{ name: 'x', type: 'tree', from: path.join(dir, 'bp') }]));
  assert.deepEqual(entries.map((e) => [e.name, e.type]), [['x/', 'directory'], ['x/bin/', 'directory'], ['x/bin/compile', 'file'], ['x/bin/detect', 'symlink']]);
  assert.equal(entries[2]!.content.toString(), '#!/bin/sh\n');
  assert.equal(entries[3]!.linkname, 'compile');
});

test('a link flipped in and out of a buildpack folder while it is copied never brings the data dir into the copy', async () => {
  const dir = tempDir('tar-race');
  const data = path.join(dir, 'data');
  const marker = `HOST-KEY-MARKER-${process.pid}`;
  fs.mkdirSync(path.join(data, 'ssh'), { recursive: true });
  fs.writeFileSync(path.join(data, 'ssh', 'host_key_secret'), marker);
  fs.writeFileSync(path.join(data, 'state_secret.json'), marker);
  const bp = path.join(dir, 'bp');
  fs.mkdirSync(path.join(bp, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(bp, 'bin', 'detect'), 'echo Race\n', { mode: 0o755 });
  fs.writeFileSync(path.join(bp, 'bin', 'compile'), 'exit 0\n', { mode: 0o755 });
  // The flipper: `bin/flip` alternates between a file and a link to the data dir's state file;
  // `lib` between a real folder and a link to the data dir itself, holding each state for a millisecond.
  const flipper = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('node:fs'); const [bp, data] = process.argv.slice(1);
       fs.mkdirSync(bp + '/lib'); fs.writeFileSync(bp + '/lib/inner', 'inner');
       const hold = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
       for (let i = 0; ; i++) {
         try {
           fs.writeFileSync(bp + '/bin/flip.tmp', 'plain'); fs.renameSync(bp + '/bin/flip.tmp', bp + '/bin/flip'); hold();
           fs.symlinkSync(data + '/state_secret.json', bp + '/bin/flip.tmp'); fs.renameSync(bp + '/bin/flip.tmp', bp + '/bin/flip');
           fs.renameSync(bp + '/lib', bp + '/lib.real'); fs.symlinkSync(data, bp + '/lib.tmp'); fs.renameSync(bp + '/lib.tmp', bp + '/lib'); hold();
           fs.unlinkSync(bp + '/lib'); fs.renameSync(bp + '/lib.real', bp + '/lib'); hold();
           if (i === 0) process.stdout.write('flipping\\n');
         } catch (e) { process.stderr.write(String(e) + '\\n'); process.exit(1); }
       }`,
      bp,
      data,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      flipper.stdout.once('data', () => resolve());
      flipper.once('exit', (code) => reject(new Error(`the flipper stopped (${code})`)));
    });
    const seen = { flipFile: 0, flipLink: 0, libFolder: 0, libLink: 0 };
    for (let i = 0; i < 400; i++) {
      const entries = await entriesOf(makeTar([{ name: 'bp', type: 'tree', from: bp }]));
      for (const e of entries) {
        assert.ok(!e.content.includes(marker), `copy ${i}: ${e.name} carries the data dir's content`);
        assert.ok(!/secret/.test(e.name), `copy ${i}: ${e.name} is a file of the data dir`);
        if (e.name === 'bp/bin/flip') seen[e.type === 'symlink' ? 'flipLink' : 'flipFile']++;
        if (e.name === 'bp/lib/') seen.libFolder++;
        if (e.name === 'bp/lib' && e.type === 'symlink') seen.libLink++;
        if (e.type === 'symlink') assert.ok(e.linkname === data || e.linkname === path.join(data, 'state_secret.json'), `copy ${i}: ${e.name} -> ${e.linkname}`);
      }
      assert.ok(entries.some((e) => e.name === 'bp/bin/compile'));
    }
    // The race did happen both ways: links were met as links, and the real entries as themselves.
    assert.ok(seen.flipFile > 0 && seen.flipLink > 0, `flip: ${JSON.stringify(seen)}`);
    assert.ok(seen.libFolder > 0 && seen.libLink > 0, `lib: ${JSON.stringify(seen)}`);
    assert.equal(flipper.exitCode, null, 'the flipper kept running');
  } finally {
    flipper.kill();
    await new Promise((resolve) => (flipper.exitCode !== null || flipper.signalCode !== null ? resolve(undefined) : flipper.once('exit', resolve)));
  }
});
