// The control socket in-process: a command that streams stops when the CLI goes away, and the
// socket keeps serving. (The same path over SSH, on real parts: e2e-concurrency.test.ts kills a
// push in the middle of its build.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { CommandContext } from '../src/cli/command.ts';
import { ControlServer } from '../src/cli/control-server.ts';
import { runRemote } from '../src/cli/control-client.ts';
import { defaultConfig } from '../src/config.ts';
import { isUserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';
import { loadState } from '../src/platform/state.ts';
import { PassThrough } from 'node:stream';

test('a streaming command stops when the CLI disconnects, and the next command is served', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-control-'));
  const logged: Record<string, unknown>[] = [];
  setLogSink((line) => logged.push(JSON.parse(line) as Record<string, unknown>));
  const services = await loadState({ ...defaultConfig(), dataDir: dir });
  let stopped: (reason: string) => void;
  const streamStopped = new Promise<string>((resolve) => (stopped = resolve));
  // A command like `logs -t`: writes until its signal says the client is gone.
  const run = async (words: readonly string[], ctx: CommandContext): Promise<number> => {
    if (words[0] !== 'follow') {
      ctx.out.line(`ran ${words.join(' ')}`);
      return 0;
    }
    for (let i = 0; !ctx.signal.aborted; i++) {
      ctx.out.line(`line ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    stopped('aborted');
    ctx.out.line('written after the client left'); // must be dropped quietly
    return 0;
  };
  const socketPath = path.join(dir, 'control.sock');
  const server = new ControlServer(socketPath, { state: services, daemon: undefined }, run);
  await server.start();
  try {
    const socket = net.connect(socketPath);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(JSON.stringify({ run: { words: ['follow'], cwd: '/' } }) + '\n');
    let received = '';
    await new Promise<void>((resolve) =>
      socket.on('data', (d: Buffer) => {
        received += d.toString();
        if ((received.match(/line \d+/g) ?? []).length >= 3) resolve();
      }),
    );
    socket.destroy();
    let timer: NodeJS.Timeout | undefined;
    const verdict = await Promise.race([streamStopped, new Promise((r) => (timer = setTimeout(() => r('still streaming after 5 s'), 5000)))]);
    clearTimeout(timer);
    assert.equal(verdict, 'aborted');
    assert.ok(logged.some((e) => e.event === 'control_client_gone' && e.command === 'follow'));

    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const code = await runRemote(socketPath, ['next', 'one'], { stdout: out, stderr: new PassThrough(), stdin: new PassThrough() });
    assert.equal(code, 0);
    assert.equal(text, 'ran next one\n');
  } finally {
    await server.stop();
    setLogSink((line) => process.stderr.write(line + '\n'));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket file left by a dead daemon is replaced; a socket another process listens on is refused by name and left alone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-control-'));
  try {
    const state = await loadState({ ...defaultConfig(), dataDir: dir });
    const socketPath = path.join(dir, 'control.sock');
    const run = async (_words: readonly string[], ctx: CommandContext): Promise<number> => {
      ctx.out.line('served');
      return 0;
    };
    // A socket file nobody listens on: what a daemon killed with SIGKILL leaves.
    const dead = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => dead.stdout.once('data', resolve));
    dead.kill('SIGKILL');
    await new Promise((resolve) => dead.once('exit', resolve));
    assert.ok(fs.existsSync(socketPath));
    const server = new ControlServer(socketPath, { state, daemon: undefined }, run);
    await server.start();
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    assert.equal(await runRemote(socketPath, ['x'], { stdout: out, stderr: new PassThrough(), stdin: new PassThrough() }), 0);
    assert.equal(text, 'served\n');

    // While it listens, a second server on the same path is refused, and the first keeps its socket.
    const second = new ControlServer(socketPath, { state, daemon: undefined }, run);
    await assert.rejects(second.start(), (e: unknown) => isUserError(e) && e.code === 'socket_in_use' && e.message === `cannot listen on ${socketPath} (control socket): the path is already in use`);
    await second.stop();
    assert.equal(await runRemote(socketPath, ['x'], { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough() }), 0);
    await server.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
