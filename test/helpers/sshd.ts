// A real OpenSSH server for tests of --docker-host ssh://: this machine's /usr/sbin/sshd on
// 127.0.0.1, with a temp host key, one authorized key and root login, its log in a file. Its
// sessions run the real `docker` CLI (`docker system dial-stdio`); a port may get its own
// environment (SetEnv), as a machine without the docker CLI or one whose DOCKER_HOST names another
// engine. Stopped by stop(), and killed at exit should a test end first.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mustRun, waitFor } from './daemon.ts';
import { freePort } from './loopback.ts';

export interface Sshd {
  /** The first port, with no environment of its own. */
  port: number;
  /** The port given `env[i]`, in the order of `options.env`. */
  envPorts: number[];
  /** A known_hosts file with the server's key for every port, hashed as Debian's ssh writes them. */
  knownHosts: string;
  /** What sshd logged so far (LogLevel DEBUG1). */
  log(): string;
  stop(): Promise<void>;
}

/** Starts sshd in `dir` (which must exist) accepting `authorizedKey` (a public key file) for root. */
export async function startSshd(dir: string, options: { authorizedKey: string; env?: Array<Record<string, string>> }): Promise<Sshd> {
  const port = await freePort();
  const envPorts: number[] = [];
  for (const _ of options.env ?? []) {
    let p = await freePort();
    while (p === port || envPorts.includes(p)) p = await freePort();
    envPorts.push(p);
  }
  const hostKey = path.join(dir, 'host_ed25519');
  mustRun('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  fs.copyFileSync(options.authorizedKey, path.join(dir, 'authorized_keys'));
  // sshd's privilege separation directory, which the package's service unit would make at boot.
  const madeRunDir = fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }) !== undefined;
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(config, [
    ...[port, ...envPorts].map((p) => `Port ${p}`),
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'LogLevel DEBUG1',
    ...(options.env ?? []).flatMap((env, i) => [`Match LocalPort ${envPorts[i]}`, ...Object.entries(env).map(([k, v]) => `  SetEnv ${k}=${v}`)]),
    '',
  ].join('\n'));
  const logFile = path.join(dir, 'sshd.log');
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
  // Its log goes to a file: a pipe would fill (and stall sshd) while a test blocks in spawnSync.
  const child = spawn('/usr/sbin/sshd', ['-D', '-E', logFile, '-f', config], { stdio: 'ignore' });
  let spawnError: Error | undefined;
  child.on('error', (e) => (spawnError = e));
  const cleanUp = () => {
    if (madeRunDir) fs.rmSync('/run/sshd', { recursive: true, force: true });
  };
  process.prependOnceListener('exit', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    cleanUp();
  });
  const listening = () => [port, ...envPorts].every((p) => log().includes(`Server listening on 127.0.0.1 port ${p}`));
  try {
    await waitFor('sshd listening', () => listening() || child.exitCode !== null || spawnError !== undefined, 10_000);
    if (child.exitCode !== null || spawnError) throw new Error(`sshd did not start: ${spawnError?.message ?? `exit ${child.exitCode}`}\n${log()}`);
  } catch (e) {
    child.kill('SIGKILL');
    cleanUp();
    throw e;
  }
  const knownHosts = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHosts, [port, ...envPorts].map((p) => mustRun('ssh-keyscan', ['-H', '-t', 'ed25519', '-p', String(p), '127.0.0.1'])).join(''));
  return {
    port,
    envPorts,
    knownHosts,
    log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      cleanUp();
    },
  };
}
