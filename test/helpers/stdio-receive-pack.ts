// Stands in for `ssh` so the real git client can push to berth's receive-pack without an SSH
// server, and the test fixture that points git at it. As a program (GIT_SSH_COMMAND="node
// <this file> <reposDir>") git appends its ssh options, the host and `git-receive-pack '/app'`,
// and it serves that push on stdin/stdout.
//
// Test hooks, chosen by environment variables:
//   BERTH_TEST_REJECT=reason       preReceive rejects every ref with this reason
//   BERTH_TEST_PROGRESS=a|b        preReceive writes these progress lines, one at a time
//   BERTH_TEST_RACE_TO=<oid>       preReceive moves every pushed ref to <oid> first (a concurrent push)
//   BERTH_TEST_POST_LOG=<file>     postReceive appends the applied updates to this file as JSON lines
//   BERTH_TEST_MAX_PACK=<bytes>    the maximum pack size
//   BERTH_TEST_LIMITS=<json>       the push's caps (PushLimits, in part)
//   BERTH_TEST_LOG_FILE=<file>     where berth's JSON log goes (instead of the pusher's terminal)
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveReceivePack, type ReceivePackHooks } from '../../src/git/receive-pack.ts';
import { Repository } from '../../src/git/repository.ts';
import { setLogSink } from '../../src/log.ts';

const HELPER = fileURLToPath(import.meta.url);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class GitFixture {
  readonly root: string;
  readonly work: string;
  readonly repos: string;
  readonly remote = 'ssh://berth@localhost:2222/app';

  private constructor(root: string) {
    this.root = root;
    this.work = path.join(root, 'work');
    this.repos = path.join(root, 'repos');
  }

  /** A work repository on `main` with one commit: a file, a nested file, an executable and a symlink. */
  static async create(): Promise<GitFixture> {
    const f = new GitFixture(await mkdtemp(path.join(tmpdir(), 'berth-git-')));
    await mkdir(path.join(f.work, 'app', 'lib'), { recursive: true });
    await mkdir(f.repos);
    await writeFile(path.join(f.work, 'README.md'), '# demo\n');
    await writeFile(path.join(f.work, 'app', 'lib', 'util.js'), 'export const x = 1;\n');
    await writeFile(path.join(f.work, 'run.sh'), '#!/bin/sh\necho hello\n');
    await chmod(path.join(f.work, 'run.sh'), 0o755);
    await symlink('README.md', path.join(f.work, 'link-to-readme'));
    await f.git('init', '-q', '-b', 'main');
    await f.commitAll('first');
    return f;
  }

  /** The environment for git: no user or system config, and this fixture's receive-pack as "ssh". */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: this.root,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.com',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.com',
      GIT_SSH_VARIANT: 'ssh',
      GIT_SSH_COMMAND: `'${process.execPath}' '${HELPER}' '${this.repos}'`,
      BERTH_TEST_LOG_FILE: path.join(this.root, 'berth.log'),
      ...extra,
    };
  }

  /** Runs git in the work repository; throws when it fails. */
  async git(...args: string[]): Promise<string> {
    const r = await this.run('git', args, this.work);
    if (r.code !== 0) throw new Error(`git ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Runs git against the bare repository that berth stored; throws when it fails. */
  async bare(...args: string[]): Promise<string> {
    const r = await this.run('git', ['--git-dir', this.gitdir, ...args], this.root);
    if (r.code !== 0) throw new Error(`git ${args.join(' ')} (bare) failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim();
  }

  /** `git push` to berth; resolves with the exit code and output whatever happened. */
  push(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    return this.run('git', ['push', this.remote, ...args], this.work, env);
  }

  get gitdir(): string {
    return path.join(this.repos, 'app.git');
  }

  async commitAll(message: string): Promise<string> {
    await this.git('add', '-A');
    await this.git('commit', '-q', '-m', message);
    return this.git('rev-parse', 'HEAD');
  }

  async write(file: string, content: string): Promise<void> {
    await mkdir(path.dirname(path.join(this.work, file)), { recursive: true });
    await writeFile(path.join(this.work, file), content);
  }

  /** Asserts nothing of git's complaints: fsck --strict and verify-pack on every pack. */
  async verifyStore(): Promise<void> {
    await this.bare('fsck', '--strict', '--no-dangling');
    const packs = (await this.run('sh', ['-c', `ls '${this.gitdir}'/objects/pack/*.idx 2>/dev/null || true`], this.root)).stdout.split('\n').filter(Boolean);
    for (const idx of packs) await this.bare('verify-pack', idx);
  }

  async cleanup(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  run(cmd: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd, env: this.env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    });
  }
}

async function main(argv: string[]): Promise<number> {
  const [reposDir, ...rest] = argv;
  const command = rest.at(-1) ?? '';
  // git's "is this OpenSSH?" probe (`-G`) must fail, so that git then passes plain arguments.
  if (rest.includes('-G')) return 255;

  const logFile = process.env.BERTH_TEST_LOG_FILE;
  if (logFile) setLogSink((line) => appendFileSync(logFile, line + '\n'));

  const match = /^git[ -]receive-pack '\/?([^']*?)(?:\.git)?'$/.exec(command);
  if (!reposDir || !match || match[1] === undefined) {
    process.stderr.write(`stdio-receive-pack: cannot serve ${JSON.stringify(command)}\n`);
    return 128;
  }
  const reject = process.env.BERTH_TEST_REJECT;
  const progressLines = process.env.BERTH_TEST_PROGRESS;
  const raceTo = process.env.BERTH_TEST_RACE_TO;
  const postLog = process.env.BERTH_TEST_POST_LOG;
  const limits = { ...(process.env.BERTH_TEST_LIMITS ? JSON.parse(process.env.BERTH_TEST_LIMITS) : {}) };
  if (process.env.BERTH_TEST_MAX_PACK) limits.packBytes = Number(process.env.BERTH_TEST_MAX_PACK);
  try {
    const repo = await Repository.open(reposDir, match[1], { create: true });
    const hooks: ReceivePackHooks = {
      preReceive: async (updates, progress) => {
        if (progressLines) {
          for (const line of progressLines.split('|')) {
            progress(line);
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        if (raceTo) for (const u of updates) await repo.updateRef(u.ref, u.oldOid, raceTo);
        if (reject) return new Map(updates.map((u) => [u.ref, reject]));
        return undefined;
      },
    };
    if (postLog) {
      hooks.postReceive = async (applied) => {
        for (const u of applied) appendFileSync(postLog, JSON.stringify(u) + '\n');
      };
    }
    await serveReceivePack({ input: process.stdin, output: process.stdout }, repo, hooks, { limits });
    return 0;
  } catch (e) {
    process.stderr.write(`stdio-receive-pack: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  // Let stdout drain before leaving: git may still be reading the report.
  process.stdout.write('', () => process.exit(code));
}
