// Bad input through real SSH channels (the real OpenSSH client, one multiplexed connection) to the
// real binary: broken pkt-lines and packs for git-receive-pack, and random command lines. Each
// gets an error to the client and a log line, the repository and the daemon are unchanged, and
// the daemon keeps serving. Cases are generated from a seed (printed, BERTH_FUZZ_SEED to replay)
// for a bounded time (BERTH_FUZZ_SECONDS, default 8).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FLUSH, pkt, PktLineReader } from '../src/git/pkt-line.ts';
import { ZERO_OID } from '../src/git/repository.ts';
import { gitRepo, makeKey, mustRun, run, startDaemon, tempDir, waitFor, writeFiles, type Daemon, type RunResult } from './helpers/daemon.ts';

const SECONDS = Number(process.env.BERTH_FUZZ_SECONDS ?? 8);
const SEED = Number(process.env.BERTH_FUZZ_SEED ?? Date.now() % 1_000_000);
const APP = 'fuzz';

let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
const work = tempDir('e2e-fuzz');
const repo = path.join(work, 'repo');
let base: string;
/** A push that would succeed: its command list and its pack, from the real git. */
let valid: { commands: Buffer; pack: Buffer };

before(async () => {
  daemon = await startDaemon();
  key = makeKey(work, 'fuzzer');
  assert.equal(daemon.cli(['ssh-keys:add', 'fuzzer', key.publicKey]).code, 0);
  base = gitRepo(repo, { 'README.md': 'fuzz base\n' });
  const pushed = run('git', ['push', daemon.remote(APP), 'main:refs/heads/base'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(pushed.code, 0, pushed.stderr);
  writeFiles(repo, { 'more.txt': 'x'.repeat(3000) + '\n', 'sub/file.txt': 'nested\n' });
  const next = gitRepo(repo, {}, 'next');
  const pack = spawnSync('git', ['pack-objects', '--revs', '--stdout', '-q'], { cwd: repo, input: `${next}\n^${base}\n` });
  assert.equal(pack.status, 0);
  valid = {
    commands: Buffer.concat([pkt(`${ZERO_OID} ${next} refs/heads/main\0report-status side-band-64k agent=fuzz\n`), pkt(`${base} ${next} refs/heads/base\n`), FLUSH]),
    pack: pack.stdout,
  };
});

after(async () => {
  run('ssh', ['-o', `ControlPath=${path.join(work, 'ssh-control')}`, '-O', 'exit', 'berth@127.0.0.1']);
  daemon.cli(['apps:destroy', APP, '--force']);
  await daemon.stop();
});

/** One exec over the shared connection; `input` is all of standard input. */
function ssh(command: string, input: Buffer): RunResult & { raw: Buffer } {
  const control = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${path.join(work, 'ssh-control')}`, '-o', 'ControlPersist=120'];
  const r = spawnSync('ssh', [...control, ...daemon.sshArgs(key.privateKey), 'berth@127.0.0.1', command], { input, timeout: 30_000, maxBuffer: 16 << 20 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString(), raw: r.stdout };
}

/** What a git client would show of receive-pack's answer: ERR packets, band-3 text, failed report lines. */
function errorShown(raw: Buffer): string {
  const reader = new PktLineReader();
  reader.push(raw);
  const shown: string[] = [];
  try {
    for (let p = reader.next(); p; p = reader.next()) {
      if (p.type !== 'data') continue;
      const text = p.data.toString('utf8');
      if (text.startsWith('ERR ')) shown.push(text);
      else if (p.data[0] === 3) shown.push(text.slice(1));
      else if (p.data[0] === 1 && /\d{4}(unpack (?!ok)|ng )/.test(text.slice(1))) shown.push(text.slice(1));
    }
  } catch {
    // the answer was cut off after the error, which is fine
  }
  return shown.join('\n');
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Case = { kind: string; command: string; input: Buffer };

/** Generators of input that is wrong by construction, one per kind of bad input. */
function makeCase(random: () => number, index: number): Case {
  const int = (n: number) => Math.floor(random() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const receive = `git-receive-pack '${APP}'`;
  const { commands, pack } = valid;
  const nonHex = () => 'ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ -_!\n\0'[int(46)]!;
  switch (index % 9) {
    case 0: // random bytes that cannot start a pkt-line
      return { kind: 'random bytes', command: receive, input: Buffer.concat([Buffer.from(nonHex()), bytes(1 + int(3000))]) };
    case 1: {
      // a first length that claims more than follows
      const body = Buffer.from(commands);
      body.write((parseInt(body.toString('latin1', 0, 4), 16) + 1 + int(200)).toString(16).padStart(4, '0'), 0, 'latin1');
      return { kind: 'a length that claims too much', command: receive, input: body.subarray(0, 4 + int(80)) };
    }
    case 2: {
      // a first length shorter than a command line
      const body = Buffer.from(commands);
      body.write((4 + int(40)).toString(16).padStart(4, '0'), 0, 'latin1');
      return { kind: 'a length that claims too little', command: receive, input: Buffer.concat([body, pack]) };
    }
    case 3: {
      // a length with a digit that is not hex
      const body = Buffer.from(commands);
      body.write(nonHex(), int(4), 'latin1');
      return { kind: 'invalid hex', command: receive, input: Buffer.concat([body, pack]) };
    }
    case 4: {
      // a flush where the pack or the next command should be
      const firstLine = parseInt(commands.toString('latin1', 0, 4), 16);
      const input =
        random() < 0.5
          ? Buffer.concat([commands.subarray(0, firstLine), FLUSH, commands.subarray(firstLine), pack])
          : Buffer.concat([commands, FLUSH, pack]);
      return { kind: 'a flush in the wrong place', command: receive, input };
    }
    case 5: {
      // a length beyond the largest pkt-line
      const over = (65521 + int(65535 - 65521)).toString(16);
      return { kind: 'an oversize line', command: receive, input: Buffer.concat([Buffer.from(over, 'latin1'), bytes(int(2000))]) };
    }
    case 6: // the pack cut anywhere
      return { kind: 'a pack that ends early', command: receive, input: Buffer.concat([commands, pack.subarray(0, int(pack.length - 1))]) };
    case 7: {
      // one byte of the pack changed, its checksum left as it was
      const broken = Buffer.from(pack);
      broken[int(broken.length)]! ^= 1 + int(255);
      return { kind: 'a pack with a bad checksum', command: receive, input: Buffer.concat([commands, broken]) };
    }
    default: {
      // a random command line, never a command's name
      const alphabet = `abcxyz:-_ 019'"\\$;|&<>(){}!#*?~\`=\t/é€`;
      const start = `'"\\$;|&<>(){}!#*?~\`=`[int(21)]!;
      const line = start + Array.from({ length: int(60) }, () => alphabet[int(alphabet.length)]).join('');
      return { kind: 'a random command line', command: line, input: Buffer.alloc(0) };
    }
  }
}

function repositoryState(): string {
  const gitdir = path.join(daemon.dataDir, 'repos', `${APP}.git`);
  const refs = mustRun('git', ['--git-dir', gitdir, 'for-each-ref', '--format=%(objectname) %(refname)']);
  const objects = fs.readdirSync(path.join(gitdir, 'objects'), { recursive: true }).map(String).sort().join('\n');
  return `${refs}\n${objects}\n${fs.readdirSync(path.join(daemon.dataDir, 'state', 'apps')).sort().join(' ')}`;
}

function failureLogCount(): number {
  return daemon.logs().split('\n').filter((l) => /"event":"(git_receive_pack_failed|ssh_exec_refused|ssh_command_failed)"/.test(l)).length;
}

test(`bad input through real SSH channels gets an error and a log line, and changes nothing (seed ${SEED})`, async () => {
  const random = mulberry32(SEED);
  const before = repositoryState();
  await waitFor('the daemon log to settle', () => failureLogCount() >= 0, 1000);
  const logsBefore = failureLogCount();
  const deadline = performance.now() + SECONDS * 1000;
  const kinds = new Map<string, number>();
  let cases = 0;
  while (cases < 9 || performance.now() < deadline) {
    const c = makeCase(random, cases);
    const r = ssh(c.command, c.input);
    const what = `case ${cases} (${c.kind}, seed ${SEED}): ${JSON.stringify(c.command.slice(0, 80))} with ${c.input.length} bytes`;
    assert.notEqual(r.code, 0, `${what} must fail`);
    const shown = c.kind === 'a random command line' ? r.stderr : errorShown(r.raw) + r.stderr;
    assert.ok(shown.trim().length > 0, `${what} must tell the client why; stdout ${JSON.stringify(r.stdout.slice(-300))}`);
    if (c.kind === 'a random command line') assert.match(r.stderr, /^ !     /, what);
    kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
    cases++;
    if (cases >= 400) break;
  }
  await waitFor(`one failure log line for each of the ${cases} cases`, () => failureLogCount() - logsBefore >= cases, 10_000);
  assert.equal(failureLogCount() - logsBefore, cases, 'exactly one failure log line per case');
  assert.equal(repositoryState(), before, 'the repository and the app state are unchanged');
  assert.equal(kinds.size, 9, `every kind of bad input was tried: ${[...kinds.keys()].join(', ')}`);

  // The daemon keeps serving: a real push and a command still work.
  const pushed = run('git', ['push', daemon.remote(APP), 'main:refs/heads/after-fuzz'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(pushed.code, 0, pushed.stderr);
  mustRun('git', ['--git-dir', path.join(daemon.dataDir, 'repos', `${APP}.git`), 'fsck', '--strict']);
  assert.equal(daemon.ssh(key.privateKey, 'apps:list').code, 0);
  process.stdout.write(`# fuzz: ${cases} cases in ${SECONDS} s, seed ${SEED}: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
});
