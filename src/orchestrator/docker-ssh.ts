// A Docker engine reached as `ssh://USER@HOST[:PORT]`, as the docker CLI reaches one: berth logs in
// over SSH (a private key, or the agent of SSH_AUTH_SOCK), after checking the host's key against
// known_hosts, and runs `docker system dial-stdio` on the remote for every HTTP connection; each is
// a channel of one SSH connection (a few more when one has many open: OpenSSH allows 10 sessions).
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { UserError } from '../errors.ts';

/** How berth logs in to the manager: a key file (else ~/.ssh/id_*), known_hosts (else ~/.ssh/known_hosts), an agent socket. */
export interface DockerSshSettings {
  keyFile?: string;
  knownHostsFile?: string;
  agentSocket?: string;
  home?: string;
}

export interface SshTarget {
  user: string;
  host: string;
  port: number;
}

const CHANNELS_PER_CONNECTION = 8;
const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

export function parseSshHost(dockerHost: string): SshTarget {
  const url = URL.canParse(dockerHost) ? new URL(dockerHost) : undefined;
  if (!url || url.protocol !== 'ssh:' || !url.hostname || (url.pathname !== '' && url.pathname !== '/')) {
    throw new UserError('invalid_docker_host', `--docker-host: "${dockerHost}" is not ssh://USER@HOST[:PORT]`, { hint: 'e.g. --docker-host ssh://deploy@manager.example.com or ssh://root@10.0.0.5:2222' });
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { user: decodeURIComponent(url.username) || os.userInfo().username, host, port: Number(url.port || 22) };
}

/** `HOST` or `[HOST]:PORT`, as known_hosts and ssh-keyscan write it. */
function knownHostName(target: SshTarget): string {
  return target.port === 22 ? target.host : `[${target.host}]:${target.port}`;
}

function keyscanCommand(target: SshTarget, file: string): string {
  return `ssh-keyscan ${target.port === 22 ? '' : `-p ${target.port} `}${target.host} >> ${file}`;
}

function globMatches(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return re.test(name);
}

function hostMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    return createHmac('sha1', Buffer.from(salt ?? '', 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const pattern of field.split(',')) {
    if (pattern.startsWith('!')) {
      if (globMatches(pattern.slice(1), name)) return false;
    } else if (globMatches(pattern, name)) matched = true;
  }
  return matched;
}

export interface KnownKey {
  type: string;
  key: Buffer;
  revoked: boolean;
}

/** The keys known_hosts lists for the target (plain, wildcard or hashed `|1|` entries; @revoked marked). */
export function knownKeys(text: string, target: SshTarget): KnownKey[] {
  const name = knownHostName(target);
  const keys: KnownKey[] = [];
  for (const raw of text.split('\n')) {
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === '' || fields[0]!.startsWith('#')) continue;
    const marker = fields[0]!.startsWith('@') ? fields.shift() : undefined;
    if (marker === '@cert-authority') continue;
    const [hosts, type, blob] = fields;
    if (!hosts || !type || !blob || !hostMatches(hosts, name)) continue;
    keys.push({ type, key: Buffer.from(blob, 'base64'), revoked: marker === '@revoked' });
  }
  return keys;
}

function fingerprint(key: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** The host key algorithms to offer: those of the known keys, so the host shows one berth can check (as OpenSSH orders them). */
function hostKeyAlgorithms(keys: KnownKey[]): string[] {
  const algorithms = new Set<string>();
  for (const { type } of keys) {
    if (type === 'ssh-rsa') ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'].forEach((a) => algorithms.add(a));
    else algorithms.add(type);
  }
  return [...algorithms];
}

function readKnownHosts(file: string, target: SshTarget): KnownKey[] {
  try {
    return knownKeys(fs.readFileSync(file, 'utf8'), target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UserError('docker_ssh_known_hosts', `--docker-ssh-known-hosts: cannot read ${file}: ${(e as Error).message}`);
    return [];
  }
}

function privateKeyOf(settings: DockerSshSettings, home: string): { file?: string; key?: Buffer } {
  if (settings.keyFile) {
    try {
      return { file: settings.keyFile, key: fs.readFileSync(settings.keyFile) };
    } catch (e) {
      throw new UserError('docker_ssh_key', `--docker-ssh-key: cannot read ${settings.keyFile}: ${(e as Error).message}`, { hint: 'give the private key berth logs in to the manager with' });
    }
  }
  for (const name of DEFAULT_KEYS) {
    const file = path.join(home, '.ssh', name);
    if (fs.existsSync(file)) return { file, key: fs.readFileSync(file) };
  }
  return {};
}

/** The login settings for one target, checked now so a wrong flag fails at start and says so. */
export function sshConnectConfig(target: SshTarget, settings: DockerSshSettings = {}): { config: ConnectConfig; describe: string; known: KnownKey[]; knownHostsFile: string; keyFile?: string } {
  const home = settings.home ?? os.homedir();
  const knownHostsFile = settings.knownHostsFile ?? path.join(home, '.ssh', 'known_hosts');
  const known = readKnownHosts(knownHostsFile, target);
  const { file, key } = privateKeyOf(settings, home);
  const agent = settings.agentSocket || undefined;
  if (!key && !agent) {
    throw new UserError('docker_ssh_no_key', `--docker-host ssh://${target.host}: no SSH key to log in with (none of ${DEFAULT_KEYS.map((k) => `~/.ssh/${k}`).join(', ')} exists, and SSH_AUTH_SOCK is unset)`, {
      hint: `give one with --docker-ssh-key FILE (its public half in ${target.user}'s ~/.ssh/authorized_keys on ${target.host}), or run berth with an ssh-agent's SSH_AUTH_SOCK`,
    });
  }
  const config: ConnectConfig = { host: target.host, port: target.port, username: target.user, agent, readyTimeout: 20_000 };
  if (key) config.privateKey = key;
  if (known.length > 0) config.algorithms = { serverHostKey: hostKeyAlgorithms(known) as never };
  const describe = [file ? `key ${file}` : undefined, agent ? 'the agent of SSH_AUTH_SOCK' : undefined].filter(Boolean).join(' and ');
  return { config, describe, known, knownHostsFile, keyFile: file };
}

interface Connection {
  client: Client;
  socket: net.Socket;
  ready: Promise<void>;
  open: number;
  closed: boolean;
}

/**
 * An http.Agent whose every connection is `docker system dial-stdio` on the remote. `failure` keeps
 * the last reason a connection failed, as a UserError that says what to do.
 */
export class SshDockerAgent extends http.Agent {
  readonly target: SshTarget;
  failure: UserError | undefined;
  readonly #login: ReturnType<typeof sshConnectConfig>;
  readonly #connections: Connection[] = [];
  readonly #ssh: typeof import('ssh2');
  /** Channels whose command has not yet exited (or whose channel has not closed). */
  readonly #running = new Set<Promise<void>>();

  constructor(ssh: typeof import('ssh2'), target: SshTarget, settings: DockerSshSettings = {}) {
    super({ keepAlive: false });
    this.#ssh = ssh;
    this.target = target;
    this.#login = sshConnectConfig(target, settings);
    this.#checkKey();
  }

  /** A key ssh2 cannot use (one with a passphrase, or no key at all) fails at start, saying so; with an agent it is left to the agent. */
  #checkKey(): void {
    const { config, keyFile } = this.#login;
    if (!config.privateKey) return;
    const parsed = this.#ssh.utils.parseKey(config.privateKey);
    if (!(parsed instanceof Error)) return;
    if (config.agent) {
      delete config.privateKey;
      return;
    }
    throw new UserError('docker_ssh_key', `cannot use the SSH key ${keyFile}: ${parsed.message}`, {
      hint: /passphrase|encrypt/i.test(parsed.message)
        ? 'load it into an ssh-agent and run berth with its SSH_AUTH_SOCK, or give a key without a passphrase with --docker-ssh-key FILE'
        : 'give an OpenSSH or PEM private key (ed25519, ecdsa or rsa) with --docker-ssh-key FILE',
    });
  }

  override createConnection(_options: unknown, done: (err: Error | null, socket?: Duplex) => void): undefined {
    this.#channel().then(
      (stream) => done(null, stream),
      (e: Error) => done(e),
    );
    return undefined;
  }

  override destroy(): void {
    for (const connection of this.#connections.splice(0)) connection.client.end();
    super.destroy();
  }

  async #channel(): Promise<Duplex> {
    const connection = this.#connections.find((c) => !c.closed && c.open < CHANNELS_PER_CONNECTION) ?? this.#connect();
    connection.open++;
    connection.socket.ref();
    const release = () => {
      connection.open--;
      // An idle connection does not keep the process alive (it stays open for the next request).
      if (connection.open === 0) connection.socket.unref();
    };
    try {
      await connection.ready;
      return await this.#dialStdio(connection, release);
    } catch (e) {
      release();
      throw this.#remember(e as Error);
    }
  }

  /**
   * Why connections failed, once every channel open now has told how its command ended (at most
   * `waitMs`). The remote command's exit status comes after its output ends, so the HTTP layer may
   * report a bare "socket hang up" before the status that says why (e.g. 127: no docker CLI).
   */
  async failureReason(waitMs = 5_000): Promise<UserError | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    await Promise.race([Promise.all(this.#running), timeout]);
    clearTimeout(timer);
    return this.failure;
  }

  #remember(e: Error): Error {
    if (e instanceof UserError) this.failure = e;
    return e;
  }

  #connect(): Connection {
    const { target } = this;
    const { config, describe, known, knownHostsFile } = this.#login;
    const client = new this.#ssh.Client();
    const socket = net.connect({ host: target.host, port: target.port });
    // TCP keep-alive notices a dead peer without a timer of ssh2's that would keep the process alive.
    socket.setKeepAlive(true, 15_000);
    let refusedKey: UserError | undefined;
    const hostVerifier = (key: Buffer): boolean => {
      const match = known.find((k) => k.key.equals(key));
      if (match && !match.revoked) return true;
      const where = `${target.host} port ${target.port}`;
      if (match?.revoked) {
        refusedKey = new UserError('docker_ssh_host_key_revoked', `the SSH host key of ${where} (${fingerprint(key)}) is marked @revoked in ${knownHostsFile}; berth does not connect`, { hint: 'check the machine; if its key was replaced on purpose, put the new one in known_hosts' });
      } else if (known.length === 0) {
        refusedKey = new UserError('docker_ssh_host_unknown', `the SSH host key of ${where} (${fingerprint(key)}) is not in ${knownHostsFile}; berth does not connect to a host it cannot verify`, {
          hint: `check that fingerprint on the machine (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it: ${keyscanCommand(target, knownHostsFile)}`,
        });
      } else {
        refusedKey = new UserError('docker_ssh_host_key_changed', `the SSH host key of ${where} CHANGED: it shows ${fingerprint(key)}, which ${knownHostsFile} does not list for it; someone may be intercepting the connection, berth does not connect`, {
          hint: `if the machine's key was replaced on purpose, remove the old one (ssh-keygen -R '${knownHostName(target)}' -f ${knownHostsFile}) and add the new: ${keyscanCommand(target, knownHostsFile)}`,
        });
      }
      return false;
    };
    const connection: Connection = { client, socket, open: 0, closed: false, ready: Promise.resolve() };
    connection.ready = new Promise<void>((resolve, reject) => {
      client.once('ready', resolve);
      client.once('error', (e: Error & { level?: string }) => {
        if (refusedKey) return reject(refusedKey);
        if (e.level === 'client-authentication') {
          return reject(new UserError('docker_ssh_auth', `ssh://${target.user}@${target.host}:${target.port} refused berth's login with ${describe}`, {
            hint: `add the public key to ~${target.user}/.ssh/authorized_keys on ${target.host} (ssh-copy-id -i KEY.pub -p ${target.port} ${target.user}@${target.host}), or give the right one with --docker-ssh-key FILE`,
          }));
        }
        if (e.level === 'client-timeout') {
          return reject(new UserError('docker_ssh_timeout', `ssh://${target.host}:${target.port} did not finish the SSH handshake in ${config.readyTimeout! / 1000} s`, { hint: 'check that an SSH server answers on that address and port' }));
        }
        reject(new UserError('docker_ssh_unreachable', `cannot reach ssh://${target.host}:${target.port}: ${e.message}`, { hint: 'check the address and port of --docker-host, and that sshd runs on that machine', cause: e }));
      });
    });
    connection.ready.catch(() => {});
    const forget = () => {
      connection.closed = true;
      const at = this.#connections.indexOf(connection);
      if (at >= 0) this.#connections.splice(at, 1);
    };
    client.on('close', forget);
    client.on('error', forget);
    this.#connections.push(connection);
    client.connect({ ...config, sock: socket, hostVerifier });
    return connection;
  }

  #dialStdio(connection: Connection, release: () => void): Promise<Duplex> {
    const { target } = this;
    return new Promise((resolve, reject) => {
      connection.client.exec('docker system dial-stdio', (err: Error | undefined, stream: ClientChannel) => {
        if (err) return reject(new UserError('docker_ssh_channel', `ssh://${target.host}:${target.port} would not run a command for berth: ${err.message}`, { hint: "allow sessions for berth's user in the machine's sshd_config (no ForceCommand, MaxSessions at least 10)", cause: err }));
        let stderr = '';
        stream.stderr.on('data', (chunk: Buffer) => {
          if (stderr.length < 4096) stderr += chunk.toString('utf8');
        });
        stream.once('close', release);
        // The status is emitted before the channel's close; a channel closed without one has ended too.
        const ended = new Promise<void>((done) => {
          stream.once('exit', () => done());
          stream.once('close', () => done());
        });
        this.#running.add(ended);
        void ended.then(() => this.#running.delete(ended));
        stream.once('exit', (code: number | null) => {
          if (code === 0 || code === null) return;
          const said = stderr.trim().split('\n').slice(-3).join(' / ');
          const failure = code === 127 || /not found/i.test(said)
            ? new UserError('docker_ssh_no_cli', `${target.user}@${target.host} has no docker command: \`docker system dial-stdio\` there said: ${said || `exit ${code}`}`, {
                hint: `install the Docker CLI on ${target.host} (apt-get install docker.io, or docker-ce-cli) in a directory on ${target.user}'s PATH for non-interactive SSH sessions`,
              })
            : /permission denied/i.test(said)
              ? new UserError('docker_ssh_engine_denied', `${target.user}@${target.host} may not use the Docker engine there: ${said}`, { hint: `add ${target.user} to the docker group on ${target.host} (usermod -aG docker ${target.user}) or log in as root` })
              : new UserError('docker_ssh_dial_failed', `\`docker system dial-stdio\` on ${target.user}@${target.host} failed (exit ${code}): ${said}`, { hint: `check that a Docker engine runs on ${target.host} (docker info there)` });
          this.failure = failure;
          (stream as Duplex).destroy(failure);
        });
        resolve(stream);
      });
    });
  }
}

/** The agent for `ssh://...` docker hosts (ssh2 is loaded only then). */
export async function sshDockerAgent(dockerHost: string, settings: DockerSshSettings = {}): Promise<SshDockerAgent> {
  const target = parseSshHost(dockerHost);
  const ssh = await import('ssh2');
  return new SshDockerAgent(ssh.default ?? ssh, target, settings);
}
