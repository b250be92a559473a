// Test harness for end-to-end tests: a real `dist/berth serve` on ephemeral ports with its own
// data dir, the real CLI, the real git client over the real OpenSSH client, real HTTP.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { tempDir } from './temp.ts';

export { tempDir };

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BINARY = path.join(ROOT, 'dist', 'berth');
export const BASE_IMAGE = process.env.BERTH_TEST_BASE_IMAGE ?? 'berth-test/base:latest';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with an argument array (never a shell) and returns its status and output. */
export function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {}): RunResult {
  const r = spawnSync(cmd, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    input: options.input,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function mustRun(cmd: string, args: string[], options: Parameters<typeof run>[2] = {}): string {
  const r = run(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** An SSH key pair made with the real ssh-keygen. */
export function makeKey(dir: string, name: string): { privateKey: string; publicKey: string } {
  const file = path.join(dir, name);
  mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', file]);
  return { privateKey: file, publicKey: file + '.pub' };
}

export interface Daemon {
  dataDir: string;
  httpPort: number;
  httpsPort: number;
  sshPort: number;
  /** The admin listener's port (Prometheus metrics at /metrics on 127.0.0.1). */
  metricsPort: number;
  domain: string;
  /** This daemon's instance id: it labels its containers and names its image repositories. */
  instance: string;
  /** The image repository of an app, berth-INSTANCE/APP. */
  imageRepo(app: string): string;
  process: ChildProcess;
  logs(): string;
  /** `berth --data-dir D ...` through the real binary. */
  cli(args: string[], input?: string): RunResult;
  /** The environment that makes `git` talk to this daemon with the given private key. */
  gitEnv(privateKey: string): NodeJS.ProcessEnv;
  remote(app: string): string;
  ssh(privateKey: string, command: string, input?: string): RunResult;
  /** The OpenSSH client options that reach this daemon with the key (port included, no host). */
  sshArgs(privateKey: string): string[];
  /** The pid of the supervisor's child in `role` now (a restart or an upgrade changes it). */
  pidOf(role: 'proxy' | 'control'): number;
  stop(): Promise<void>;
}

export async function startDaemon(options: { dataDir?: string; domain?: string; env?: NodeJS.ProcessEnv; args?: string[] } = {}): Promise<Daemon> {
  if (!fs.existsSync(BINARY)) throw new Error(`${BINARY} is missing: run \`npm run build\` first (npm test does)`);
  const dataDir = options.dataDir ?? tempDir('data');
  const domain = options.domain ?? 'berth.test';
  let output = '';
  const child = spawn(BINARY, ['serve', '--data-dir', dataDir, '--http-port', '0', '--https-port', '0', '--ssh-port', '0', '--bind', '127.0.0.1', '--domain', domain, '--network', 'berth-test', '--checks-wait', '1', '--metrics-listen', '127.0.0.1:0', '--dashboard-listen', '127.0.0.1:0', ...(options.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  // A test that fails before its daemon.stop() must not leave the daemon running (nor writing into
  // its data dir while that is removed): first in line at exit.
  process.prependOnceListener('exit', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const started = await new Promise<{ httpPort: number; httpsPort: number; sshPort: number; metricsPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`berth serve did not start within 60 s:\n${output}`)), 60_000);
    const check = () => {
      for (const line of output.split('\n')) {
        if (!line.includes('"berth_started"')) continue;
        const entry = JSON.parse(line) as { httpPort: number; httpsPort: number; sshPort: number; metricsPort: number };
        clearTimeout(timer);
        resolve(entry);
        return;
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`berth serve exited with ${code} before it started:\n${output}`));
    });
  });
  const sshArgs = (privateKey: string) => [
    '-i', privateKey,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR',
    '-o', 'BatchMode=yes',
    '-p', String(started.sshPort),
  ];
  const daemon: Daemon = {
    pidOf: (role) => childPid(child.pid!, role),
    dataDir,
    domain,
    instance: fs.readFileSync(path.join(dataDir, 'state', 'instance'), 'utf8').trim(),
    imageRepo: (app) => `berth-${fs.readFileSync(path.join(dataDir, 'state', 'instance'), 'utf8').trim()}/${app}`,
    httpPort: started.httpPort,
    httpsPort: started.httpsPort,
    sshPort: started.sshPort,
    metricsPort: started.metricsPort,
    process: child,
    logs: () => output,
    cli: (args, input) => run(BINARY, ['--data-dir', dataDir, ...args], input === undefined ? {} : { input }),
    gitEnv: (privateKey) => ({ ...process.env, GIT_SSH_COMMAND: ['ssh', ...sshArgs(privateKey)].join(' '), GIT_TERMINAL_PROMPT: '0' }),
    remote: (app) => `ssh://berth@127.0.0.1:${started.sshPort}/${app}`,
    ssh: (privateKey, command, input) => run('ssh', [...sshArgs(privateKey), 'berth@127.0.0.1', command], input === undefined ? {} : { input }),
    sshArgs,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
  return daemon;
}

/**
 * What a daemon's tests may leave behind when one fails before its apps are destroyed: the
 * daemon's containers and networks (by its instance label), the images of `apps` and their build
 * cache volumes. Call it after `daemon.stop()`.
 */
export function removeInstanceLeftovers(daemon: Pick<Daemon, 'instance' | 'imageRepo'>, apps: readonly string[]): void {
  const label = `label=berth.instance=${daemon.instance}`;
  const listed = (args: string[]) => run('docker', args).stdout.split('\n').filter(Boolean);
  const containers = listed(['ps', '-aq', '--filter', label]);
  if (containers.length) run('docker', ['rm', '-f', ...containers]);
  const networks = listed(['network', 'ls', '-q', '--filter', label]);
  if (networks.length) run('docker', ['network', 'rm', ...networks]);
  const tags = apps.flatMap((app) => listed(['images', '--format', '{{.Repository}}:{{.Tag}}', daemon.imageRepo(app)]));
  if (tags.length) run('docker', ['rmi', '-f', ...tags]);
  const volumes = apps.map((app) => `berth-cache.${daemon.instance}.${app}`).filter((v) => run('docker', ['volume', 'inspect', v]).code === 0);
  if (volumes.length) run('docker', ['volume', 'rm', '-f', ...volumes]);
}

/** An HTTP request to the proxy on loopback with the given Host header. */
export function request(port: number, host: string, urlPath = '/', headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { host, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

/** A git work tree with the given files committed on main. */
export function gitRepo(dir: string, files: Record<string, string>, message = 'initial'): string {
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(path.join(dir, '.git'))) {
    mustRun('git', ['init', '-q', '-b', 'main'], { cwd: dir });
    mustRun('git', ['config', 'user.email', 'dev@example.test'], { cwd: dir });
    mustRun('git', ['config', 'user.name', 'Test Developer'], { cwd: dir });
  }
  writeFiles(dir, files);
  mustRun('git', ['add', '-A'], { cwd: dir });
  mustRun('git', ['commit', '-q', '-m', message], { cwd: dir });
  return mustRun('git', ['rev-parse', 'HEAD'], { cwd: dir }).trim();
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
}

/** A small Node web app built FROM the local base image; `message` is what `/` answers. */
export function nodeApp(message: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`,
    'server.js': `const http = require('http');
const message = ${JSON.stringify(message)};
http.createServer((req, res) => {
  if (req.url === '/headers') { res.setHeader('content-type', 'application/json'); return res.end(JSON.stringify(req.headers)); }
  if (req.url === '/env') { res.setHeader('content-type', 'application/json'); return res.end(JSON.stringify({ PORT: process.env.PORT, DYNO: process.env.DYNO })); }
  res.end(message + '\\n');
}).listen(Number(process.env.PORT), '0.0.0.0');
`,
    ...extra,
  };
}

/** Polls until `fn` returns true, or throws with `what` after `timeoutMs`. */
export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The child of `supervisor` in `role`: started as `berth __ROLE`, titled `berth ROLE` once it runs (the title replaces its argv). */
export function childPid(supervisor: number, role: 'proxy' | 'control'): number {
  const children = fs.readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  for (const pid of children) {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.split('\0').includes(`__${role}`) || cmdline.replace(/\0+$/, '') === `berth ${role}`) return pid;
  }
  throw new Error(`berth serve (pid ${supervisor}) has no ${role} process now`);
}

/** One process of `berth status`. */
export interface StatusLine {
  role: string;
  pid: number;
  version: string;
  /** serving, or retiring while an upgrade replaces it. */
  state: string;
}

/** The output of `berth status`, parsed and checked column by column. */
export function parseStatus(text: string): StatusLine[] {
  const lines = text.trim().split('\n');
  assert.match(lines[0]!, /^ROLE\s+PID\s+VERSION\s+UPTIME\s+RSS\s+STATE$/);
  return lines.slice(1).map((line) => {
    const [role, pid, version, uptime, rss, unit, state] = line.trim().split(/\s+/);
    assert.match(uptime!, /^\d+[smhd]/, line);
    assert.match(state!, /^(serving|retiring)$/, line);
    assert.ok(Number(rss) > 0 && unit === 'MB', line);
    return { role: role!, pid: Number(pid), version: version!, state: state! };
  });
}
