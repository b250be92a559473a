// End to end on real parts, what a tenant's container can do to the server and its neighbours:
// dist/berth serve with its default limits, a Dockerfile app (its process root) and a buildpack
// app (its process an unprivileged user) pushed over OpenSSH, the real Docker engine, HTTP through
// berth's proxy. Each app runs on a network of its own: from inside one app, another app's
// container does not answer, while the proxy serves both. Containers run with a memory and a pids
// limit, with every capability dropped but APP_CAPABILITIES, and with no-new-privileges; a
// deployment of an older berth on the shared network moves to the app's network at its next
// deploy without a failed request.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { APP_CAPABILITIES } from '../src/orchestrator/engine.ts';
import { NODE_FIXTURE_BUILDPACK, STACK_IMAGE, writeBuildpack } from './helpers/buildpacks.ts';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, removeInstanceLeftovers, request, run, startDaemon, tempDir, waitFor, type Daemon } from './helpers/daemon.ts';
import { startLoadLoop } from './helpers/zero-downtime.ts';

const work = tempDir('e2e-containers');
const SHARED = 'berth-test';
const [ROOTY, PACKED, OLD, MOVED, PROBE] = ['iso-rooty', 'iso-packed', 'iso-old', 'iso-moved', 'iso-probe'];
const bpDir = writeBuildpack(path.join(work, 'buildpacks', 'nodejs'), NODE_FIXTURE_BUILDPACK);
// A buildpack whose compile connects to the address in the app's probe-target file, from inside the build container.
const proberDir = writeBuildpack(path.join(work, 'buildpacks', 'prober'), {
  detect: '[[ -f "$1/probe-target" ]] && echo Prober',
  compile: `target="$(cat "$1/probe-target")"
node -e "console.log('build address: ' + Object.values(require('os').networkInterfaces()).flat().find((i) => i.family === 'IPv4' && !i.internal).address)"
node -e "const [h, p] = process.argv[1].split(':'); const s = require('net').connect(Number(p), h); const say = (w) => { console.log('probe ' + process.argv[1] + ': ' + w); process.exit(0); }; s.on('connect', () => say('connected')); s.on('error', (e) => say('error ' + e.code)); setTimeout(() => say('no answer'), 3000);" "$target"`,
  release: 'echo "--- {}"',
});
const daemonEnv = { BERTH_STACK_IMAGE: STACK_IMAGE, BERTH_BUILDPACKS: `${proberDir},${bpDir}` };
let daemon: Daemon;
let key: { privateKey: string; publicKey: string };
/** Whether this file made the shared network an older berth ran every app on (and so removes it). */
let madeShared = false;

/** Linux capability numbers (include/uapi/linux/capability.h) of the ones berth keeps. */
const CAP_NUMBERS: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10 };
const KEPT_MASK = APP_CAPABILITIES.reduce((mask, cap) => mask | (1n << BigInt(CAP_NUMBERS[cap]!)), 0n);

// The app's runtime is the probe: /status is its own /proc/self/status, /connect?host=&port= a
// TCP connection it opens (connected, refused, or no answer within 3 s).
const SERVER = (message: string) => `const http = require('http');
const net = require('net');
const fs = require('fs');
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://app');
  if (url.pathname === '/status') return res.end(fs.readFileSync('/proc/self/status', 'utf8'));
  if (url.pathname === '/connect') {
    const socket = net.connect({ host: url.searchParams.get('host'), port: Number(url.searchParams.get('port')) });
    const done = (what) => { clearTimeout(timer); socket.destroy(); if (!res.headersSent) res.end(what); };
    const timer = setTimeout(() => done('no answer'), 3000);
    socket.once('connect', () => done('connected'));
    socket.once('error', (e) => done('error ' + e.code));
    return;
  }
  res.end(${JSON.stringify(message)} + '\\n');
}).listen(Number(process.env.PORT), '0.0.0.0');
`;
const dockerfileApp = (message: string) => ({ Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`, 'server.js': SERVER(message) });
const buildpackApp = (message: string) => ({
  'package.json': JSON.stringify({ name: 'iso', version: '1.0.0', main: 'server.js' }) + '\n',
  'server.js': SERVER(message),
});

before(async () => {
  daemon = await startDaemon({ env: daemonEnv });
  key = makeKey(work, 'admin');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', key.publicKey]).code, 0);
});

after(async () => {
  for (const app of [ROOTY, PACKED, OLD, MOVED, PROBE]) daemon.cli(['apps:destroy', app, '--force']);
  await daemon.stop();
  // Whatever a failed test left: this daemon's containers (the old-style one included), networks, images and volumes.
  removeInstanceLeftovers(daemon, [ROOTY, PACKED, OLD, MOVED, PROBE]);
  if (madeShared) run('docker', ['network', 'rm', SHARED]);
});

const host = (app: string) => `${app}.${daemon.domain}`;
const get = async (app: string, p = '/') => (await request(daemon.httpPort, host(app), p)).body;
const ssh = (command: string) => daemon.ssh(key.privateKey, command);
const networkOf = (app: string) => `${SHARED}-${daemon.instance}-${app}`;

function push(app: string, files: Record<string, string>, message = 'deploy'): string {
  const repo = path.join(work, app);
  gitRepo(repo, files, message);
  const p = run('git', ['push', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(p.code, 0, p.stderr);
  return p.stderr;
}

/** The app's web container as the engine has it. */
function web(app: string): { id: string; network: string; ip: string; hostConfig: { Memory: number; MemorySwap: number; PidsLimit: number; CapDrop: string[]; CapAdd: string[]; SecurityOpt: string[] } } {
  const id = mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${app}`, '--filter', 'label=berth.process=web']).trim();
  assert.match(id, /^[0-9a-f]+$/, `one running web container of ${app}`);
  const info = JSON.parse(mustRun('docker', ['inspect', id]))[0];
  const network = info.HostConfig.NetworkMode as string;
  return { id, network, ip: info.NetworkSettings.Networks[network].IPAddress, hostConfig: info.HostConfig };
}

function inSubnet(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const n = (ip: string) => ip.split('.').reduce((v, o) => (v << 8n) | BigInt(o), 0n);
  const mask = ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - Number(bits))) - 1n);
  return (n(address) & mask) === (n(base!) & mask);
}

/** CapEff, CapBnd and NoNewPrivs of a /proc/PID/status. */
function privileges(status: string): { eff: bigint; bnd: bigint; noNewPrivs: string } {
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)$`, 'm').exec(status)?.[1] ?? assert.fail(`no ${name} in:\n${status}`);
  return { eff: BigInt('0x' + field('CapEff')), bnd: BigInt('0x' + field('CapBnd')), noNewPrivs: field('NoNewPrivs') };
}

test('each app runs on its own network: from inside one app another app\'s container does not answer, the proxy serves both, and a one-off runs on its app\'s network', async () => {
  push(ROOTY, dockerfileApp('rooty v1'));
  push(PACKED, buildpackApp('packed v1'));
  assert.equal(await get(ROOTY), 'rooty v1\n');
  assert.equal(await get(PACKED), 'packed v1\n');
  const rooty = web(ROOTY);
  const packed = web(PACKED);
  assert.equal(rooty.network, networkOf(ROOTY));
  assert.equal(packed.network, networkOf(PACKED));
  const labels = JSON.parse(mustRun('docker', ['network', 'inspect', networkOf(ROOTY), '--format', '{{json .Labels}}']));
  assert.equal(labels['berth.instance'], daemon.instance);
  assert.equal(labels['berth.app'], ROOTY);

  // The probe works (the app reaches itself), and the neighbour, on another network, stays silent.
  assert.equal(await get(ROOTY, `/connect?host=${rooty.ip}&port=5000`), 'connected');
  const silent = /^(no answer|error E(HOSTUNREACH|CONNREFUSED|TIMEDOUT|NETUNREACH))$/;
  assert.match(await get(ROOTY, `/connect?host=${packed.ip}&port=5000`), silent);
  assert.match(await get(PACKED, `/connect?host=${rooty.ip}&port=5000`), silent);

  // A one-off joins its app's network: it reaches its app's web container and not the other app's.
  const probe = (ip: string) => `run ${ROOTY} node -e "const s = require('net').connect(5000, '${ip}'); s.on('connect', () => { console.log('connected'); process.exit(0); }); s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); }); setTimeout(() => { console.log('no answer'); process.exit(0); }, 3000);"`;
  const own = ssh(probe(rooty.ip));
  assert.equal(own.code, 0, own.stderr);
  assert.equal(own.stdout.trim(), 'connected');
  const other = ssh(probe(packed.ip));
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stdout.trim(), silent);
});

test("a buildpack build runs on its app's network: from inside the build another app's container does not answer", async () => {
  const target = `${web(ROOTY).ip}:5000`;
  const output = push(PROBE, { 'probe-target': target, 'server.js': SERVER('probe v1'), Procfile: 'web: node server.js\n' });
  assert.match(output, new RegExp(`remote: probe ${target.replace(/\./g, '\\.')}: (no answer|error E(HOSTUNREACH|CONNREFUSED|TIMEDOUT|NETUNREACH))\\s*$`, 'm'));
  assert.equal(await get(PROBE), 'probe v1\n');
  assert.equal(web(PROBE).network, networkOf(PROBE));
  // The build container was on the app's network (not Docker's default bridge, shared by every build).
  const address = /remote: build address: (\S+)/.exec(output)?.[1] ?? assert.fail(output);
  const subnet = mustRun('docker', ['network', 'inspect', networkOf(PROBE), '--format', '{{range .IPAM.Config}}{{.Subnet}}{{end}}']).trim();
  assert.ok(inSubnet(address, subnet), `${address} is in ${subnet}`);
});

test('an app linked to another (Engine.connectNetwork, the seam for services) reaches it, and its own address stays the one the proxy uses', async () => {
  const engine = await DockerEngine.connect('/var/run/docker.sock', daemon.instance);
  const rooty = web(ROOTY);
  const packed = web(PACKED);
  await engine.connectNetwork(rooty.id, networkOf(PACKED), ['rooty-link']);
  await engine.connectNetwork(rooty.id, networkOf(PACKED), ['rooty-link']); // already attached: no error
  assert.equal(await get(ROOTY, `/connect?host=${packed.ip}&port=5000`), 'connected');
  assert.equal((await engine.inspect(rooty.id)).ip, rooty.ip);
  assert.equal(await get(ROOTY), 'rooty v1\n');
});

test('app containers run with the default memory and pids limits, every capability dropped but the kept ones, and no new privileges; a one-off too', async () => {
  for (const app of [ROOTY, PACKED]) {
    const { hostConfig } = web(app);
    assert.equal(hostConfig.Memory, 512 * 1024 ** 2, `${app}: --container-memory's default`);
    assert.equal(hostConfig.MemorySwap, 512 * 1024 ** 2, `${app}: no swap beyond it`);
    assert.equal(hostConfig.PidsLimit, 512, `${app}: --container-pids's default`);
    const bare = (caps: string[]) => caps.map((c) => c.replace(/^CAP_/, '')).sort();
    assert.deepEqual(bare(hostConfig.CapDrop), ['ALL']);
    assert.deepEqual(bare(hostConfig.CapAdd), [...APP_CAPABILITIES].sort());
    assert.deepEqual(hostConfig.SecurityOpt, ['no-new-privileges']);
  }
  // From inside the running processes: the Dockerfile app's root process holds only the kept
  // capabilities; the buildpack app's process (an unprivileged user) none; neither can gain any.
  const rootyStatus = privileges(await get(ROOTY, '/status'));
  assert.equal(rootyStatus.eff, KEPT_MASK);
  assert.equal(rootyStatus.bnd, KEPT_MASK);
  assert.equal(rootyStatus.noNewPrivs, '1');
  const packedStatus = privileges(await get(PACKED, '/status'));
  assert.equal(packedStatus.eff, 0n);
  assert.equal(packedStatus.bnd, KEPT_MASK);
  assert.equal(packedStatus.noNewPrivs, '1');

  // A one-off gets the same: capabilities, no-new-privileges, and the cgroup limits.
  const oneOff = ssh(`run ${ROOTY} 'cat /proc/self/status; echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max); echo memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)'`);
  assert.equal(oneOff.code, 0, oneOff.stderr);
  const runStatus = privileges(oneOff.stdout);
  assert.equal(runStatus.eff, KEPT_MASK);
  assert.equal(runStatus.noNewPrivs, '1');
  assert.match(oneOff.stdout, /^pids=512$/m);
  assert.match(oneOff.stdout, new RegExp(`^memory=${512 * 1024 ** 2}$`, 'm'));

  // What a dropped capability was for, tried as root: making a device node (MKNOD) is refused.
  const mknod = ssh(`run ${ROOTY} mknod /tmp/mem c 1 1`);
  assert.notEqual(mknod.code, 0);
  assert.match(mknod.stdout + mknod.stderr, /Operation not permitted/);
});

test('a fork bomb stops at the pids limit and a memory hog is killed at the memory limit; resource:limit overrides the defaults per app and limit-clear restores them', async () => {
  // The default memory limit holds: a one-off that allocates without end is killed at 512m.
  const hog = ssh(`run ${ROOTY} node -e "const a = []; for (;;) a.push(Buffer.alloc(8 << 20, 1))"`);
  assert.equal(hog.code, 137, `killed by the kernel's OOM killer: ${hog.stdout}${hog.stderr}`);

  const limited = daemon.cli(['resource:limit', ROOTY, '--process', 'run', '--pids', '24', '--no-restart']);
  assert.equal(limited.code, 0, limited.stderr);
  assert.match(limited.stdout, /run\s+-\s+-\s+24/);
  const bomb = ssh(`run ${ROOTY} 'for i in $(seq 64); do sleep 3 & done; wait; echo survived'`);
  assert.match(bomb.stdout + bomb.stderr, /can't fork|Resource temporarily unavailable/i);

  const set = daemon.cli(['resource:limit', PACKED, '--memory', '256m', '--pids', '128']);
  assert.equal(set.code, 0, set.stderr);
  assert.equal(web(PACKED).hostConfig.Memory, 256 * 1024 ** 2);
  assert.equal(web(PACKED).hostConfig.PidsLimit, 128);
  assert.equal(await get(PACKED), 'packed v1\n');
  const bad = daemon.cli(['resource:limit', PACKED, '--pids', 'lots']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--pids lots is not a number of processes from 8 to 1000000/);
  const cleared = daemon.cli(['resource:limit-clear', PACKED]);
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.equal(web(PACKED).hostConfig.Memory, 512 * 1024 ** 2);
  assert.equal(web(PACKED).hostConfig.PidsLimit, 512);
});

test('a deployment an older berth left on the shared network is adopted, then moves to its own network at the next deploy without a failed request', async () => {
  push(OLD, dockerfileApp('old v1'));
  const first = web(OLD);
  // What an older berth left: the same container (labels, name, image, env) on the shared network.
  const info = JSON.parse(mustRun('docker', ['inspect', first.id]))[0];
  await daemon.stop();
  mustRun('docker', ['rm', '-f', first.id]);
  // An older berth made the shared network at its start, without an owner's label.
  if (run('docker', ['network', 'inspect', SHARED]).code !== 0) {
    mustRun('docker', ['network', 'create', SHARED]);
    madeShared = true;
  }
  const labels = Object.entries(info.Config.Labels as Record<string, string>).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  const env = (info.Config.Env as string[]).flatMap((e) => ['-e', e]);
  mustRun('docker', ['run', '-d', '--name', info.Name.slice(1), '--network', SHARED, '--init', '--restart', 'unless-stopped', ...labels, ...env, info.Config.Image]);
  daemon = await startDaemon({ dataDir: daemon.dataDir, env: daemonEnv });
  await waitFor('the adopted container on the shared network to be served', async () => (await get(OLD)) === 'old v1\n', 60_000);
  const adopted = web(OLD);
  assert.equal(adopted.network, SHARED);

  const load = startLoadLoop(daemon.httpPort, host(OLD), 4);
  push(OLD, dockerfileApp('old v2'), 'v2');
  await waitFor('v2 to be served', async () => (await get(OLD)) === 'old v2\n');
  const records = await load.stop();
  const failed = records.filter((r) => r.status !== 200 || !/^old v[12]\n$/.test(r.body));
  assert.ok(records.length > 0);
  assert.deepEqual(failed, [], `every request during the move was answered by v1 or v2`);
  const moved = web(OLD);
  assert.equal(moved.network, networkOf(OLD));
  await waitFor('the old container to be removed', () => run('docker', ['inspect', adopted.id]).code !== 0);
  const onShared = mustRun('docker', ['network', 'inspect', SHARED, '--format', '{{range .Containers}}{{.Name}} {{end}}']);
  assert.doesNotMatch(onShared, new RegExp(`^${OLD}\\.|\\s${OLD}\\.`));
});

test('apps:rename moves the app to a network of its new name and removes the old one', async () => {
  const rename = daemon.cli(['apps:rename', OLD, MOVED]);
  assert.equal(rename.code, 0, rename.stderr);
  assert.equal(await get(MOVED), 'old v2\n');
  assert.equal(web(MOVED).network, networkOf(MOVED));
  assert.notEqual(run('docker', ['network', 'inspect', networkOf(OLD)]).code, 0, `${networkOf(OLD)} is gone`);
});

test('apps:destroy removes the app\'s network, cutting off the apps linked to it', async () => {
  for (const app of [PACKED, ROOTY, MOVED, PROBE]) {
    const destroy = daemon.cli(['apps:destroy', app, '--force']);
    assert.equal(destroy.code, 0, destroy.stderr);
    assert.notEqual(run('docker', ['network', 'inspect', networkOf(app)]).code, 0, `${networkOf(app)} is gone`);
    // The app linked to the destroyed one lost the link, not its own network.
    if (app === PACKED) assert.equal(await get(ROOTY), 'rooty v1\n');
  }
  assert.equal(run('docker', ['network', 'ls', '-q', '--filter', `label=berth.instance=${daemon.instance}`]).stdout.trim(), '');
});
