// `berth upgrade`: the local CLI asks the supervisor over its own unix socket in the data dir
// (mode 0600, so only the operator can), and prints the steps as they happen and the outcome.
// Not a command of the control plane: the control plane is one of the processes being replaced.
import fs from 'node:fs/promises';
import net from 'node:net';
import { UserError } from '../errors.ts';
import { listenError } from '../listen-error.ts';
import { log } from '../log.ts';
import type { UpgradeRequest } from './messages.ts';
import type { UpgradeResult } from './supervisor.ts';

export type { UpgradeRequest };
type Frame = { step: string } | { done: UpgradeResult } | { error: { code: string; message: string; hint?: string } };

/** The supervisor's side: one upgrade request per connection. */
export class UpgradeSocket {
  readonly #path: string;
  readonly #upgrade: (request: UpgradeRequest, progress: (line: string) => void) => Promise<UpgradeResult>;
  #server: net.Server | undefined;

  constructor(socketPath: string, upgrade: (request: UpgradeRequest, progress: (line: string) => void) => Promise<UpgradeResult>) {
    this.#path = socketPath;
    this.#upgrade = upgrade;
  }

  async start(): Promise<void> {
    // Only one supervisor runs per data dir (the pid file): a socket file left here is a dead one's.
    await fs.rm(this.#path, { force: true });
    const server = net.createServer((socket) => this.#serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, { what: 'supervisor socket', address: this.#path, flag: '--data-dir' })));
      server.listen(this.#path, () => resolve());
    });
    await fs.chmod(this.#path, 0o600);
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(this.#path, { force: true });
  }

  #serve(socket: net.Socket): void {
    socket.on('error', () => undefined);
    const send = (frame: Frame) => {
      if (!socket.destroyed) socket.write(JSON.stringify(frame) + '\n');
    };
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const end = buffered.indexOf('\n');
      if (end < 0) return;
      socket.removeAllListeners('data');
      let request: UpgradeRequest;
      try {
        request = JSON.parse(buffered.slice(0, end)) as UpgradeRequest;
      } catch {
        socket.destroy();
        return;
      }
      this.#upgrade(request, (line) => send({ step: line })).then(
        (result) => {
          send({ done: result });
          socket.end();
        },
        (e: unknown) => {
          if (e instanceof UserError) send({ error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } });
          else {
            log.error('upgrade_crashed', { error: e });
            send({ error: { code: 'internal', message: `the upgrade failed: ${(e as Error).message}` } });
          }
          socket.end();
        },
      );
    });
  }
}

/** Whether a supervisor answers at `socketPath`: berth serve runs for that data dir. */
export function supervisorAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** The CLI's side: asks for an upgrade, reports each step, and returns the outcome. */
export async function requestUpgrade(socketPath: string, request: UpgradeRequest, onStep: (line: string) => void): Promise<UpgradeResult> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath);
    s.once('connect', () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(new UserError('daemon_not_running', `no berth serve runs for this data dir (nothing answers at ${socketPath})`, { hint: 'start it with berth serve, or give its --data-dir' }));
      } else reject(e);
    });
  });
  socket.write(JSON.stringify(request) + '\n');
  return new Promise<UpgradeResult>((resolve, reject) => {
    let buffered = '';
    let settled = false;
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let end: number;
      while ((end = buffered.indexOf('\n')) >= 0) {
        const frame = JSON.parse(buffered.slice(0, end)) as Frame;
        buffered = buffered.slice(end + 1);
        if ('step' in frame) onStep(frame.step);
        else if ('done' in frame) {
          settled = true;
          resolve(frame.done);
        } else {
          settled = true;
          reject(new UserError(frame.error.code, frame.error.message, frame.error.hint ? { hint: frame.error.hint } : {}));
        }
      }
    });
    socket.on('error', reject);
    socket.on('close', () => {
      if (!settled) reject(new Error('the supervisor closed the connection before the upgrade finished (see its log)'));
    });
  });
}
