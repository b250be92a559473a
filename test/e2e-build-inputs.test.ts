// End to end on real parts, each exploit path of a tenant's build inputs performed for real: a key
// scoped to app `ina` (over the real OpenSSH client, pushing with the real git) tries to read the
// server's files through directory buildpacks, another app's (`inb`) release image through
// git:from-image, buildpacks:set-stack and a Dockerfile's FROM / COPY --from, and to make the
// server request a loopback HTTP server standing in for cloud metadata. Each is refused with its
// message and changes nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { STACK_IMAGE, writeBuildpack } from './helpers/buildpacks.ts';
import { BASE_IMAGE, gitRepo, makeKey, mustRun, nodeApp, request, run, startDaemon, tempDir, type Daemon } from './helpers/daemon.ts';

const work = tempDir('e2e-inputs');
const A = 'ina';
const B = 'inb';
const METADATA_BODY = `instance-identity-SECRET-${process.pid}`;
let daemon: Daemon;
let admin: { privateKey: string; publicKey: string };
let tenant: { privateKey: string; publicKey: string };
// The metadata stand-in and the redirector run in a child process: the pushes here block this one.
let servers: ChildProcess;
let metadataPort = 0;
let redirectorPort = 0;
let metadataHits = 0;
const onBuildImage = `berth-test/onbuild-${process.pid}:latest`;
const bpDir = writeBuildpack(path.join(work, 'bp', 'never'), { detect: 'exit 1', compile: 'exit 1' });

const SERVERS = `
const http = require('node:http');
const body = process.argv[1];
const metadata = http.createServer((req, res) => { process.stdout.write('hit\\n'); res.end(body); });
metadata.listen(0, '127.0.0.1', () => {
  const mport = metadata.address().port;
  // A host the admin allows (127.0.0.2): it redirects to the metadata server, and answers a non-git body of its own.
  const redirector = http.createServer((req, res) => {
    if (req.url.startsWith('/to-metadata')) return void res.writeHead(302, { location: 'http://127.0.0.1:' + mport + '/latest/meta-data/' }).end();
    res.end(body);
  });
  redirector.listen(0, '127.0.0.2', () => process.stdout.write('ports ' + mport + ' ' + redirector.address().port + '\\n'));
});
process.once('SIGTERM', () => process.exit(0));
`;

before(async () => {
  servers = spawn(process.execPath, ['-e', SERVERS, METADATA_BODY], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let text = '';
    servers.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      metadataHits = (text.match(/^hit$/gm) ?? []).length;
      const m = /^ports (\d+) (\d+)$/m.exec(text);
      if (m && !redirectorPort) {
        [metadataPort, redirectorPort] = [Number(m[1]), Number(m[2])];
        resolve();
      }
    });
    servers.once('exit', (code) => reject(new Error(`the test servers stopped (${code})`)));
  });
  daemon = await startDaemon({ env: { BERTH_STACK_IMAGE: STACK_IMAGE, BERTH_BUILDPACKS: bpDir }, args: ['--fetch-allow-host', '127.0.0.2'] });
  admin = makeKey(work, 'admin');
  tenant = makeKey(work, 'tenant');
  assert.equal(daemon.cli(['ssh-keys:add', 'admin', admin.publicKey]).code, 0);
  assert.equal(daemon.cli(['ssh-keys:add', 'tenant', tenant.publicKey, '--apps', A]).code, 0);
  assert.equal(daemon.cli(['apps:create', A]).code, 0);
  const repo = path.join(work, B);
  gitRepo(repo, nodeApp('inb v1'));
  const p = run('git', ['push', daemon.remote(B), 'main'], { cwd: repo, env: daemon.gitEnv(admin.privateKey) });
  assert.equal(p.code, 0, p.stderr);
});

after(async () => {
  for (const app of [A, B]) daemon?.cli(['apps:destroy', app, '--force']);
  await daemon?.stop();
  servers?.kill();
  run('docker', ['rmi', '-f', onBuildImage]);
});

const asTenant = (command: string) => daemon.ssh(tenant.privateKey, command);
const asAdmin = (command: string) => daemon.ssh(admin.privateKey, command);
const imagesOfA = () => mustRun('docker', ['images', '-q', daemon.imageRepo(A)]).trim();
const releasesOfA = () => daemon.cli(['releases', A]).stdout;
const bImage = () => `${daemon.imageRepo(B)}:r1`;
const bImageId = () => mustRun('docker', ['image', 'inspect', bImage(), '--format', '{{.Id}}']).trim();

function tenantPush(repo: string): { code: number; stderr: string } {
  return run('git', ['push', '--force', daemon.remote(A), 'main'], { cwd: repo, env: daemon.gitEnv(tenant.privateKey) });
}

test('a scoped key cannot name a buildpack folder on the server; the refusal is the same whether the path exists or not', () => {
  const before = asTenant(`buildpacks:list ${A}`).stdout;
  const answers = [daemon.dataDir, path.join(daemon.dataDir, 'ssh'), '/etc', '/no/such/folder/anywhere', `file://${daemon.dataDir}`, 'file:///no/such/folder'].flatMap((p) => [
    asTenant(`buildpacks:set ${A} ${p}`),
    asTenant(`buildpacks:add ${A} ${p}`),
  ]);
  for (const r of answers) {
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr, answers[0]!.stderr, 'one message whether the folder exists or not');
  }
  assert.match(answers[0]!.stderr, /key "tenant" may not use a buildpack folder on the server: only an admin may/);
  assert.doesNotMatch(answers[0]!.stderr, /exist/);
  assert.equal(asTenant(`buildpacks:list ${A}`).stdout, before, 'nothing changed');
});

test('a pushed .buildpacks or BUILDPACK_URL naming a server folder is refused before the folder is looked at, and no release is made', () => {
  const repo = path.join(work, 'a-buildpacks');
  const tries: Array<[string, RegExp]> = [
    [`${daemon.dataDir}\n`, /\.buildpacks names \S+, a folder on the server: \.buildpacks may name only buildpack URLs/],
    ['file:///no/such/folder\n', /\.buildpacks names file:\/\/\/no\/such\/folder, a folder on the server/],
  ];
  for (const [file, message] of tries) {
    gitRepo(repo, { 'x.txt': file, '.buildpacks': file }, file);
    const p = tenantPush(repo);
    assert.notEqual(p.code, 0);
    assert.match(p.stderr, message);
    assert.match(p.stderr, /! \[remote rejected\] main -> main/);
  }
  assert.equal(asTenant(`config:set ${A} BUILDPACK_URL=${path.join(daemon.dataDir, 'ssh')} --no-restart`).code, 0);
  gitRepo(repo, { 'x.txt': 'again' }, 'again');
  const p = tenantPush(repo);
  assert.match(p.stderr, /BUILDPACK_URL names \S+, a folder on the server: BUILDPACK_URL may name only buildpack URLs/);
  assert.equal(asTenant(`config:unset ${A} BUILDPACK_URL --no-restart`).code, 0);
  assert.equal(imagesOfA(), '');
  assert.match(releasesOfA(), /no releases yet/);
});

test('stack images: only an admin allows one; a scoped key sets only allowed ones, and never another app\'s release image, even one the admin allowed', () => {
  const listBefore = asTenant(`buildpacks:list ${A}`).stdout;
  const allow = asTenant(`buildpacks:allow-stack ${BASE_IMAGE}`);
  assert.match(allow.stderr, /key "tenant" may not run buildpacks:allow-stack/);
  const notAllowed = asTenant(`buildpacks:set-stack ${A} ${BASE_IMAGE}`);
  assert.match(notAllowed.stderr, new RegExp(`buildpacks:set-stack ${A} refused: ${BASE_IMAGE} is not an image the admin allows`));
  for (const other of [bImage(), bImageId(), bImageId().slice(7, 19)]) {
    const r = asTenant(`buildpacks:set-stack ${A} ${other}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`refused: ${other} is a release image of another app \\(${B}\\)`));
  }
  assert.equal(asAdmin(`buildpacks:allow-stack ${bImage()}`).code, 0);
  assert.match(asTenant(`buildpacks:set-stack ${A} ${bImage()}`).stderr, /is a release image of another app \(inb\)/, 'always refused');
  assert.equal(asTenant(`buildpacks:list ${A}`).stdout, listBefore, 'nothing changed');

  assert.equal(asAdmin(`buildpacks:allow-stack ${BASE_IMAGE}`).code, 0);
  assert.match(asTenant('buildpacks:allowed-stacks').stdout, new RegExp(`${STACK_IMAGE} \\(--stack-image\\)\\n(.*\\n)*${BASE_IMAGE}`));
  const set = asTenant(`buildpacks:set-stack ${A} ${BASE_IMAGE}`);
  assert.equal(set.code, 0, set.stderr);
  assert.match(asTenant(`buildpacks:list ${A}`).stdout, new RegExp(`stack: ${BASE_IMAGE}`));
  assert.equal(asTenant(`buildpacks:set-stack ${A}`).code, 0);
  for (const image of [BASE_IMAGE, bImage()]) assert.equal(asAdmin(`buildpacks:disallow-stack ${image}`).code, 0);
  assert.doesNotMatch(asTenant('buildpacks:allowed-stacks').stdout, new RegExp(BASE_IMAGE));
});

test("git:from-image with a scoped key: another app's release image is refused by tag, full id, short id and digest form, with nothing deployed", () => {
  for (const other of [bImage(), bImageId(), bImageId().slice(7), bImageId().slice(7, 19), `docker.io/${bImage()}`]) {
    const r = asTenant(`git:from-image ${A} ${other}`);
    assert.notEqual(r.code, 0, other);
    assert.match(r.stderr, new RegExp(`git:from-image ${A} refused: \\S+ is a release image of another app \\(${B}\\)`), other);
  }
  const notAllowed = asTenant(`git:from-image ${A} ${BASE_IMAGE}`);
  assert.match(notAllowed.stderr, new RegExp(`${BASE_IMAGE} is not an image ${A} built, nor an image the admin allows`));
  assert.equal(imagesOfA(), '');
  assert.match(releasesOfA(), /no releases yet/);
});

test("a Dockerfile push cannot read another app's image (FROM by tag, short id, ARG, untagged layer or a base image's ONBUILD; COPY --from by tag or digest; a Dockerfile that is a link) nor make the server fetch a URL (ADD); no release is made", () => {
  const repo = path.join(work, 'a-docker');
  const id = bImageId();
  const parentOfB = mustRun('docker', ['image', 'inspect', bImage(), '--format', '{{.Parent}}']).trim();
  assert.match(parentOfB, /^sha256:/);
  const built = run('docker', ['build', '-q', '-t', onBuildImage, '-'], { input: `FROM ${BASE_IMAGE}\nONBUILD COPY --from=${bImage()} /app /stolen\n`, env: { ...process.env, DOCKER_BUILDKIT: '0' } });
  assert.equal(built.code, 0, built.stderr);
  const variants: Array<[string, RegExp]> = [
    [`FROM ${bImage()}\nCMD ["node", "/app/server.js"]\n`, new RegExp(`Dockerfile line 1 \\(FROM ${bImage()}\\): ${bImage()} is a release image of another app \\(${B}\\)`)],
    [`FROM ${BASE_IMAGE}\nCOPY --from=${bImage()} /app /stolen\n`, new RegExp(`Dockerfile line 2 \\(COPY --from ${bImage()}\\): \\S+ is a release image of another app \\(${B}\\)`)],
    [`FROM ${id.slice(7, 19)}\n`, new RegExp(`Dockerfile line 1 \\(FROM ${id.slice(7, 19)}\\): ${id.slice(7, 19)} is a release image of another app \\(${B}\\)`)],
    [`FROM ${BASE_IMAGE}\nCOPY --from=${id} /app /stolen\n`, /Dockerfile line 2 \(COPY --from sha256:[0-9a-f]{64}\): \S+ is a release image of another app \(inb\)/],
    [`ARG BASE=${daemon.imageRepo(B)}\nFROM \${BASE}:r1\n`, /Dockerfile line 2 \(FROM \$\{BASE\}:r1\): \S+ is a release image of another app \(inb\)/],
    [`FROM ${BASE_IMAGE}\nCOPY --from=$FROM_SOMEWHERE /app /x\n`, /Dockerfile line 2 \(COPY --from \$FROM_SOMEWHERE\): the image cannot be known before the build/],
    // ADD with a URL: the Docker daemon would fetch the metadata server from the server's network.
    [`FROM ${BASE_IMAGE}\nADD http://127.0.0.1:${metadataPort}/latest/meta-data/ /meta\n`, /Dockerfile line 2 \(ADD http:\/\/127\.0\.0\.1:\d+\/latest\/meta-data\/\): ADD fetches a URL from the server itself/],
    // The untagged layer under inb's image (its build's intermediate image), by id.
    [`FROM ${parentOfB}\n`, /Dockerfile line 1 \(FROM sha256:[0-9a-f]{64}\): \S+ is an untagged image/],
    // A base image whose ONBUILD trigger reads inb's image.
    [`FROM ${onBuildImage}\n`, new RegExp(`an ONBUILD trigger of a base image \\(COPY --from ${bImage()}\\): \\S+ is a release image of another app \\(${B}\\)`)],
  ];
  for (const [dockerfile, message] of variants) {
    gitRepo(repo, { ...nodeApp('ina'), Dockerfile: dockerfile }, dockerfile);
    const p = tenantPush(repo);
    assert.notEqual(p.code, 0, dockerfile);
    assert.match(p.stderr, message, dockerfile);
    assert.match(p.stderr, /! \[remote rejected\] main -> main/);
  }
  // A Dockerfile that is a link to a file holding FROM inb: the engine would follow it.
  fs.writeFileSync(path.join(repo, 'real.Dockerfile'), `FROM ${bImage()}\n`);
  fs.rmSync(path.join(repo, 'Dockerfile'));
  fs.symlinkSync('real.Dockerfile', path.join(repo, 'Dockerfile'));
  mustRun('git', ['add', '-A'], { cwd: repo });
  mustRun('git', ['commit', '-q', '-m', 'link'], { cwd: repo });
  const link = tenantPush(repo);
  assert.match(link.stderr, /the Dockerfile is a link: a Dockerfile build reads a Dockerfile that is a regular file/);
  assert.equal(imagesOfA(), '');
  assert.match(releasesOfA(), /no releases yet/);
});

test("the app's own builds go on: a Dockerfile FROM the admin's base image, then FROM its own release image, and git:from-image of its own image", async () => {
  const repo = path.join(work, 'a-own');
  gitRepo(repo, nodeApp('ina v1'));
  const first = tenantPush(repo);
  assert.equal(first.code, 0, first.stderr);
  gitRepo(repo, { Dockerfile: `FROM ${daemon.imageRepo(A)}:r1\nRUN echo own > /own.txt\nCMD ["node", "/app/server.js"]\n` }, 'own base');
  const second = tenantPush(repo);
  assert.equal(second.code, 0, second.stderr);
  const own = asTenant(`git:from-image ${A} ${daemon.imageRepo(A)}:r1`);
  assert.equal(own.code, 0, own.stderr);
  assert.equal((await request(daemon.httpPort, `${A}.${daemon.domain}`)).body, 'ina v1\n');
});

test('buildpack fetches: the metadata server directly and through a redirect are refused, it sees no request, and no answer body reaches the pusher', async () => {
  const repo = path.join(work, 'a-fetch');
  const tries: Array<[string, RegExp]> = [
    [`http://127.0.0.1:${metadataPort}/latest/meta-data.git`, /could not fetch buildpack \S+: 127\.0\.0\.1 is a loopback address: berth fetches only from public addresses \(an admin may allow the host with --fetch-allow-host\)/],
    [`http://localhost:${metadataPort}/bp.tgz`, /could not fetch buildpack \S+: localhost is at (127\.0\.0\.1|::1), a loopback address/],
    [`http://169.254.169.254/latest/meta-data.git`, /169\.254\.169\.254 is a link-local address/],
    [`http://127.0.0.2:${redirectorPort}/to-metadata.git`, /could not fetch buildpack \S+: 127\.0\.0\.1 is a loopback address/],
    [`http://127.0.0.2:${redirectorPort}/plain.git`, /could not fetch buildpack \S+: the answer is not a git repository \(no smart HTTP answer\)/],
  ];
  for (const [url, message] of tries) {
    gitRepo(repo, { 'x.txt': url, '.buildpacks': `${url}\n` }, url);
    const p = tenantPush(repo);
    assert.notEqual(p.code, 0, url);
    assert.match(p.stderr, message, url);
    assert.ok(!p.stderr.includes('SECRET'), `no answer body in the push output: ${p.stderr}`);
  }
  // The child's output is read once this process is free again.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(metadataHits, 0, 'the metadata server saw no request');
  // It does count requests: one from this test shows up.
  assert.equal((await request(metadataPort, '127.0.0.1', '/latest/meta-data/')).body, METADATA_BODY);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(metadataHits, 1);
});
