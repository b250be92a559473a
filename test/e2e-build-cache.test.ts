// End to end on real parts, what one app's Dockerfile build may take from another's: the build
// cache and the network. App `cacb` (pushed by the admin) runs a Dockerfile whose RUN writes random
// bytes to /token, as if it fetched a secret; app `caca` (a key scoped to it, over the real
// OpenSSH client, pushing with the real git) pushes the identical Dockerfile and gets a token of
// its own, not cacb's cached layer; its own cache still serves its next push. A build's RUN step
// runs on its app's network: it reaches its app's running container, never another app's.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, removeInstanceLeftovers, run, startDaemon, tempDir, type Daemon } from './helpers/daemon.ts';

const work = tempDir('e2e-build-cache');
const A = 'caca';
const B = 'cacb';
// In the RUN line, so that the layers this file builds are found (and removed) by it.
const MARKER = `berth-build-cache-test-${process.pid}`;
const SERVER = `require('http').createServer((req, res) => res.end('up\\n')).listen(Number(process.env.PORT), '0.0.0.0');\n`;
const tokenApp = (note: string) => ({
  Dockerfile: `FROM ${BASE_IMAGE}\nRUN head -c 16 /dev/urandom | od -An -tx1 > /token # ${MARKER}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`,
  'server.js': SERVER,
  'note.txt': note,
});
// Connects to each HOST:PORT in /probe/targets from a RUN step: connected, an error, or no answer in 3 s.
const PROBE = `const net = require('net');
const targets = require('fs').readFileSync('/probe/targets', 'utf8').split('\\n').filter(Boolean);
Promise.all(targets.map((t) => new Promise((done) => {
  const [host, port] = t.split(':');
  const s = net.connect(Number(port), host);
  const say = (what) => { clearTimeout(timer); s.destroy(); done('probe ' + t + ': ' + what); };
  const timer = setTimeout(() => say('no answer'), 3000);
  s.once('connect', () => say('connected'));
  s.once('error', (e) => say('error ' + e.code));
}))).then((lines) => console.log(lines.join('\\n')));
`;
let daemon: Daemon;
let admin: { privateKey: string; publicKey: string };
let tenant: { privateKey: string; publicKey: string };

before(async () => {
  daemon = await startDaemon();
  admin = makeKey(work, 'admin');
  tenant = makeKey(work, 'tenant');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  assert.equal(daemon.cli(['ssh-keys:add', 'tenant', tenant.publicKey, '--apps', A]).code, 0);
  assert.equal(daemon.cli(['apps:create', A]).code, 0);
});

after(async () => {
  for (const app of [A, B]) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  // Whatever a failed test left: this daemon's containers, networks, images and volumes, and the layers of its RUN steps.
  if (!daemon) return;
  removeInstanceLeftovers(daemon, [A, B]);
  const dangling = run('docker', ['images', '-q', '--no-trunc', '--filter', 'dangling=true']).stdout.split('\n').filter(Boolean);
  const ours = dangling.filter((id) => run('docker', ['image', 'inspect', id, '--format', '{{json .ContainerConfig.Cmd}}']).stdout.includes(MARKER));
  if (ours.length) run('docker', ['rmi', '-f', ...ours]);
});

function push(app: string, repo: string, key: { privateKey: string }): { stderr: string; ms: number } {
  const started = Date.now();
  const p = run('git', ['push', '--force', daemon.remote(app), 'main'], { cwd: repo, env: daemon.gitEnv(key.privateKey) });
  assert.equal(p.code, 0, p.stderr);
  return { stderr: p.stderr, ms: Date.now() - started };
}

/** The /token of the app's current release, read in a one-off container of it. */
function tokenOf(app: string, key: { privateKey: string }): string {
  const r = daemon.ssh(key.privateKey, `run ${app} cat /token`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^( [0-9a-f]{2}){16}\n$/);
  return r.stdout;
}

test("build cache shared across apps: an app pushing another app's Dockerfile runs its RUN steps itself; its own next build still uses its own cache", (t) => {
  const repoB = path.join(work, B);
  gitRepo(repoB, tokenApp('b'));
  push(B, repoB, admin);
  const tokenB = tokenOf(B, admin);

  const repoA = path.join(work, A);
  gitRepo(repoA, tokenApp('a'));
  const cold = push(A, repoA, tenant);
  assert.doesNotMatch(cold.stderr, /Using cache/, "no step of caca's first build comes from cacb's layers");
  const tokenA = tokenOf(A, tenant);
  assert.notEqual(tokenA, tokenB, "caca's RUN ran: its token is not cacb's");

  gitRepo(repoA, { 'note.txt': 'a, changed after the RUN step' }, 'note changed');
  const cached = push(A, repoA, tenant);
  assert.match(cached.stderr, /Step 2\/4 : RUN head -c 16[^\n]*\n(remote: )?\s*---> Using cache/, "caca's RUN comes from its own previous build");
  assert.equal(tokenOf(A, tenant), tokenA, "the token of caca's own cached layer");
  assert.equal(tokenOf(B, admin), tokenB, 'cacb is as it was');
  t.diagnostic(`caca: first build push ${cold.ms} ms, rebuild from its own cache ${cached.ms} ms`);
});

test("a Dockerfile build's RUN step runs on its app's network: it reaches its app's own container, not another app's, by address or by name", () => {
  const webOf = (app: string) => mustRun('docker', ['ps', '-q', '--filter', `label=berth.instance=${daemon.instance}`, '--filter', `label=berth.app=${app}`, '--filter', 'label=berth.process=web']).trim();
  const idB = webOf(B);
  assert.ok(idB, 'cacb runs (the test above pushed it)');
  assert.ok(webOf(A), 'caca runs');
  const ipB = mustRun('docker', ['inspect', idB, '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}']).trim();
  assert.match(ipB, /^\d+\.\d+\.\d+\.\d+$/);
  const repoA = path.join(work, A);
  gitRepo(repoA, {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY probe.js targets /probe/\nRUN node /probe/probe.js # ${MARKER}\nCOPY . /app\nCMD ["node", "/app/server.js"]\n`,
    'probe.js': PROBE,
    targets: [`${A}.web.1:5000`, `${ipB}:5000`, `${B}.web.1:5000`].join('\n') + '\n',
  }, 'probe');
  const { stderr } = push(A, repoA, tenant);
  assert.match(stderr, new RegExp(`probe ${A}\\.web\\.1:5000: connected`), 'its own app answers: the step runs on its network');
  assert.match(stderr, new RegExp(`probe ${ipB.replaceAll('.', '\\.')}:5000: (no answer|error E(HOSTUNREACH|CONNREFUSED|TIMEDOUT|NETUNREACH))`), "cacb's container does not answer");
  assert.match(stderr, new RegExp(`probe ${B}\\.web\\.1:5000: error (ENOTFOUND|EAI_AGAIN)`), "cacb's name is not known there");
});
