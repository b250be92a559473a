// A real Docker Swarm on this one machine, for tests: each node is a container of the
// berth-test/swarm-node image (scripts/provision.sh: this machine's own dockerd, containerd and
// runc), with a fixed address on a bridge network of its own; the manager's engine is the one
// berth is pointed at (`--docker-host tcp://MANAGER:2375`). Every container, volume and network a
// cluster makes is named with a random prefix of its own, so test files can run side by side, and
// stop() removes them by name, never by prune.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { sleep } from '../../src/sleep.ts';

/** The node image scripts/provision.sh builds. */
export const SWARM_NODE_IMAGE = process.env.BERTH_TEST_SWARM_NODE_IMAGE ?? 'berth-test/swarm-node:latest';
/**
 * `berth serve --registry-image` in tests: Debian's docker-registry behind the official registry:2
 * image's contract (scripts/provision.sh).
 */
export const REGISTRY_TEST_IMAGE = process.env.BERTH_TEST_REGISTRY_IMAGE ?? 'berth-test/registry:2';

export interface SwarmNodeHandle {
  /** The node's hostname, as Swarm lists it; also its container's name. */
  name: string;
  /** The node container's id on this machine's engine. */
  container: string;
  /** The node's address on the cluster's network, reachable from this machine. */
  address: string;
  /** Its engine's API: tcp://ADDRESS:2375 (plain TCP, no TLS). */
  dockerHost: string;
}

export interface TestCluster {
  manager: SwarmNodeHandle;
  workers: SwarmNodeHandle[];
  /** The manager, then the workers (not the nodes addNode() made). */
  nodes: SwarmNodeHandle[];
  /** The name of the bridge network the node containers are on. */
  network: string;
  /** Runs a command in a node's container (sh -c); stdout. */
  exec(node: SwarmNodeHandle, command: string): Promise<string>;
  /** `docker` CLI against one node's engine, e.g. docker(node, ['ps','--format','{{.Names}}']). */
  docker(node: SwarmNodeHandle, args: string[]): Promise<string>;
  /**
   * Copies images from this machine's engine into the given nodes' engines (one `docker save`,
   * streamed into each node's `docker load`); by default every node of `nodes` not killed.
   */
  loadImages(refs: string[], nodes?: SwarmNodeHandle[]): Promise<void>;
  /** Starts one more node container, NOT joined (for testing a join command). */
  addNode(): Promise<SwarmNodeHandle>;
  /** docker rm -fv of a node's container (a machine lost). */
  kill(node: SwarmNodeHandle): Promise<void>;
  /** Removes every node, volume and network it made, by id/name; idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a manager and `workers` workers, forms a Swarm (`--dispatcher-heartbeat 1s`, so a lost
 * node is noticed in about 2 s), waits until every node is `ready`, and loads `images` into every
 * node. Throws with what went wrong (after removing what it made) when it cannot.
 */
export async function startSwarmCluster(options: { workers: number; images?: string[]; /** SWARM_NODE_IMAGE unless given (the harness's own tests). */ nodeImage?: string }): Promise<TestCluster> {
  const nodeImage = options.nodeImage ?? SWARM_NODE_IMAGE;
  await checkNodeImage(nodeImage);
  const cluster = new Cluster(`berth-swarm-${randomBytes(3).toString('hex')}`, nodeImage);
  try {
    await cluster.createNetwork();
    const started = await allSettled(Array.from({ length: options.workers + 1 }, () => cluster.startNode()));
    const [manager, ...workers] = started;
    cluster.manager = manager!;
    cluster.workers = workers;
    cluster.nodes = started;
    await allSettled([cluster.formSwarm(), options.images?.length ? cluster.loadImages(options.images) : Promise.resolve()]);
    return cluster;
  } catch (e) {
    await cluster.stop().catch((stopError: Error) => process.stderr.write(`swarm cluster ${cluster.prefix}: cleaning up: ${stopError.message}\n`));
    throw new Error(`starting a test Swarm of ${options.workers + 1} nodes (${cluster.prefix}-*): ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Promise.all that waits for every promise before it rejects, so that stop() never runs while a
 * node container is still being made (it would outlive the cluster).
 */
async function allSettled<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

/** `docker` on this machine's engine (or on another with -H); stdout, or an error with stderr. */
export async function docker(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync('docker', args, { maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000 });
    return stdout;
  } catch (e) {
    const failure = e as Error & { stderr?: string };
    throw new Error(`docker ${args.join(' ')}: ${(failure.stderr || failure.message).trim()}`, { cause: e });
  }
}

const execFileAsync = promisify(execFile);
const API_PORT = 2375;
const SWARM_PORT = 2377;
const ENGINE_START_MS = 30_000;
const READY_MS = 30_000;

class Cluster implements TestCluster {
  manager!: SwarmNodeHandle;
  workers: SwarmNodeHandle[] = [];
  nodes: SwarmNodeHandle[] = [];
  network: string;
  private subnetBase = '';
  private nextHost = 2;
  private readonly containers: string[] = [];
  private readonly volumes: string[] = [];
  private readonly killed = new Set<string>();
  private networkMade = false;
  private stopped = false;
  private readonly stopAtExit = () => this.stopSync();

  readonly prefix: string;
  private readonly image: string;

  constructor(prefix: string, image: string) {
    this.prefix = prefix;
    this.image = image;
    this.network = `${prefix}-net`;
    // If the test process exits without stop() (an uncaught error, process.exit), the nodes go with it.
    process.once('exit', this.stopAtExit);
  }

  async createNetwork(): Promise<void> {
    const taken = await takenSubnets();
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < 8; attempt++) {
      const base = `10.${200 + randomInt(55)}.${randomInt(256)}`;
      if (taken.some((subnet) => overlaps(subnet, `${base}.0/24`))) continue;
      try {
        await docker(['network', 'create', '--driver', 'bridge', '--subnet', `${base}.0/24`, '--label', `berth.test.swarm=${this.prefix}`, this.network]);
        this.networkMade = true;
        this.subnetBase = base;
        return;
      } catch (e) {
        // Another test file took the same subnet at the same moment: try another.
        if (!/overlap|already/i.test((e as Error).message)) throw e;
        lastError = e as Error;
      }
    }
    throw new Error(`no free /24 for the cluster's network in 10.200.0.0/16-10.254.0.0/16${lastError ? `: ${lastError.message}` : ''}`);
  }

  /** Starts a node container and waits until its engine answers. */
  async startNode(): Promise<SwarmNodeHandle> {
    const host = this.nextHost++;
    const name = `${this.prefix}-node${host - 1}`;
    const address = `${this.subnetBase}.${host}`;
    const volume = `${name}-data`;
    this.volumes.push(volume);
    // Registered before it exists, so that a start which fails halfway is still cleaned up.
    this.containers.push(name);
    const container = (
      await docker([
        'run', '--detach', '--name', name, '--hostname', name, '--network', this.network, '--ip', address,
        '--label', `berth.test.swarm=${this.prefix}`,
        // What --privileged gives, but the capabilities this machine's bounding set lacks
        // (--privileged fails here for want of CAP_SYS_RESOURCE).
        '--init', '--cap-add', 'ALL', ...missingCapabilities().flatMap((cap) => ['--cap-drop', cap]),
        '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined', '--security-opt', 'systempaths=unconfined',
        '--device-cgroup-rule', 'a *:* rwm',
        '--volume', `${volume}:/var/lib/docker`,
        this.image,
      ])
    ).trim();
    const node: SwarmNodeHandle = { name, container, address, dockerHost: `tcp://${address}:${API_PORT}` };
    await this.waitForEngine(node);
    return node;
  }

  async formSwarm(): Promise<void> {
    await this.docker(this.manager, ['swarm', 'init', '--advertise-addr', this.manager.address, '--listen-addr', `${this.manager.address}:${SWARM_PORT}`, '--dispatcher-heartbeat', '1s']);
    const token = (await this.docker(this.manager, ['swarm', 'join-token', '--quiet', 'worker'])).trim();
    await Promise.all(this.workers.map((worker) => this.docker(worker, ['swarm', 'join', '--token', token, '--advertise-addr', worker.address, `${this.manager.address}:${SWARM_PORT}`])));
    const deadline = Date.now() + READY_MS;
    let states = '';
    while (Date.now() < deadline) {
      states = await this.docker(this.manager, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}}']);
      const lines = states.trim().split('\n').filter(Boolean);
      if (lines.length === this.nodes.length && lines.every((line) => line.endsWith(' Ready'))) return;
      await sleep(200);
    }
    throw new Error(`the nodes were not all ready within ${READY_MS / 1000} s:\n${states}`);
  }

  async exec(node: SwarmNodeHandle, command: string): Promise<string> {
    return docker(['exec', node.container, 'sh', '-c', command]);
  }

  async docker(node: SwarmNodeHandle, args: string[]): Promise<string> {
    return docker(['--host', node.dockerHost, ...args]);
  }

  async loadImages(refs: string[], nodes?: SwarmNodeHandle[]): Promise<void> {
    const targets = nodes ?? this.nodes.filter((node) => !this.killed.has(node.container));
    if (refs.length === 0 || targets.length === 0) return;
    // One `docker save`, piped into every node's `docker load` (a pipe to several destinations
    // waits for the slowest, so nothing piles up in memory).
    const save = spawn('docker', ['save', ...refs], { stdio: ['ignore', 'pipe', 'pipe'] });
    const loads = targets.map((node) => spawn('docker', ['--host', node.dockerHost, 'load', '--quiet'], { stdio: ['pipe', 'ignore', 'pipe'] }));
    for (const load of loads) {
      save.stdout.pipe(load.stdin);
      // A load that fails closes its stdin; the error is its exit status, reported below.
      load.stdin.on('error', () => {});
    }
    const results = await Promise.all([exitOf(save, `docker save ${refs.join(' ')}`), ...loads.map((load, i) => exitOf(load, `docker load into ${targets[i]!.name}`))]);
    const failures = results.filter((result): result is string => result !== undefined);
    if (failures.length) throw new Error(`loading ${refs.join(', ')}: ${failures.join('; ')}`);
  }

  async addNode(): Promise<SwarmNodeHandle> {
    return this.startNode();
  }

  async kill(node: SwarmNodeHandle): Promise<void> {
    this.killed.add(node.container);
    await docker(['rm', '--force', '--volumes', node.container]);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    const problems: string[] = [];
    const attempt = async (args: string[]) => {
      try {
        await docker(args);
      } catch (e) {
        if (!/no such/i.test((e as Error).message)) problems.push((e as Error).message);
      }
    };
    // One by one, so that a container already gone does not keep the others.
    await Promise.all(this.containers.map((name) => attempt(['rm', '--force', '--volumes', name])));
    await Promise.all(this.volumes.map((name) => attempt(['volume', 'rm', name])));
    if (this.networkMade) await attempt(['network', 'rm', this.network]);
    if (problems.length) throw new Error(`removing swarm cluster ${this.prefix}: ${problems.join('; ')}`);
    this.stopped = true;
    process.removeListener('exit', this.stopAtExit);
  }

  private stopSync(): void {
    if (this.stopped) return;
    const quiet = (args: string[]) => {
      try {
        execFileSync('docker', args, { stdio: 'ignore', timeout: 30_000 });
      } catch {
        // What is already gone is fine; what is not shows in `docker ps -a`.
      }
    };
    if (this.containers.length) quiet(['rm', '--force', '--volumes', ...this.containers]);
    if (this.volumes.length) quiet(['volume', 'rm', ...this.volumes]);
    if (this.networkMade) quiet(['network', 'rm', this.network]);
  }

  private async waitForEngine(node: SwarmNodeHandle): Promise<void> {
    const deadline = Date.now() + ENGINE_START_MS;
    let lastError = '';
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`http://${node.address}:${API_PORT}/_ping`, { signal: AbortSignal.timeout(1000) });
        if (response.ok) return;
        lastError = `HTTP ${response.status}`;
      } catch (e) {
        lastError = (e as Error).message;
      }
      const state = (await docker(['inspect', '--format', '{{.State.Status}}', node.container])).trim();
      if (state !== 'running') {
        const logs = await docker(['logs', '--tail', '20', node.container]).catch((e: Error) => e.message);
        throw new Error(`node ${node.name}'s container is ${state}; its last lines:\n${logs}`);
      }
      await sleep(100);
    }
    const logs = await docker(['logs', '--tail', '20', node.container]).catch((e: Error) => e.message);
    throw new Error(`node ${node.name}'s engine did not answer on ${node.dockerHost} within ${ENGINE_START_MS / 1000} s (${lastError}); its last lines:\n${logs}`);
  }
}

async function checkNodeImage(image: string): Promise<void> {
  try {
    await docker(['image', 'inspect', '--format', '{{.Id}}', image]);
  } catch (e) {
    throw new Error(`the Swarm node image ${image} is missing: run scripts/provision.sh (it builds it from this machine's dockerd)`, { cause: e });
  }
}

/** A finished child's failure as text (its stderr), or undefined when it exited 0. */
function exitOf(child: ReturnType<typeof spawn>, what: string): Promise<string | undefined> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => {
    child.on('error', (e) => resolve(`${what}: ${e.message}`));
    child.on('close', (code) => resolve(code === 0 ? undefined : `${what} exited ${code}: ${stderr.trim()}`));
  });
}

// Linux's capabilities by number, as docker --cap-drop names them.
const CAPABILITIES = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT',
  'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE',
  'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ',
  'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
];

/**
 * The capabilities this machine's bounding set lacks (read from /proc/self/status: the engine runs
 * on this machine, under the same bounding set), which `--cap-add ALL` must not ask for.
 */
function missingCapabilities(): string[] {
  const line = fs.readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*([0-9a-f]+)$/m);
  if (!line) return [];
  const bounding = BigInt(`0x${line[1]}`);
  return CAPABILITIES.filter((_, bit) => (bounding & (1n << BigInt(bit))) === 0n);
}

/** The IPv4 subnets in use: every Docker network's, and this machine's routes. */
async function takenSubnets(): Promise<string[]> {
  const ids = (await docker(['network', 'ls', '--quiet'])).trim().split('\n').filter(Boolean);
  const subnets = ids.length ? (await docker(['network', 'inspect', '--format', '{{range .IPAM.Config}}{{.Subnet}} {{end}}', ...ids])).split(/\s+/).filter((s) => s.includes('.')) : [];
  try {
    for (const line of fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const [, destination, , , , , , mask] = line.trim().split(/\s+/);
      if (!destination || !mask || mask === '00000000') continue;
      subnets.push(`${hexAddress(destination)}/${countBits(parseInt(mask, 16))}`);
    }
  } catch {
    // No /proc/net/route (not Linux): Docker's own networks are what matters most.
  }
  return subnets;
}

/** /proc/net/route's little-endian hex address as dotted quad. */
function hexAddress(hex: string): string {
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function countBits(n: number): number {
  let bits = 0;
  for (let v = n >>> 0; v; v >>>= 1) bits += v & 1;
  return bits;
}

function overlaps(a: string, b: string): boolean {
  const [aStart, aEnd] = range(a);
  const [bStart, bEnd] = range(b);
  return aStart <= bEnd && bStart <= aEnd;
}

function range(cidr: string): [number, number] {
  const [address, bits] = cidr.split('/');
  const start = address!.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits ?? 32));
  const first = start - (start % size);
  return [first, first + size - 1];
}

function randomInt(below: number): number {
  return randomBytes(2).readUInt16BE() % below;
}
