// `berth serve`: the supervisor. It binds the HTTP, HTTPS and SSH sockets (or takes them from
// systemd), holds the pid file, and runs the proxy and the control plane as child processes of
// the same binary (daemon/supervisor.ts); it prints the start-up banner once both are ready, and
// stops them on SIGTERM/SIGINT. It does nothing else, so it has little reason to fail.
import fs from 'node:fs/promises';
import { StreamOutput } from './ui/output.ts';
import { dataPaths, loadConfig, parseListen, SERVE_FLAGS } from './config.ts';
import { UserError } from './errors.ts';
import { log, setLogLevel } from './log.ts';
import { holdSockets } from './daemon/listen-sockets.ts';
import sea from 'node:sea';
import { ChildFailed, selfCommand } from './daemon/role-child.ts';
import { Supervisor, UPGRADE_DEFAULTS, type UpgradeOptions } from './daemon/supervisor.ts';
import { MetricsServer } from './metrics/metrics-server.ts';
import { UpgradeSocket, type UpgradeRequest } from './daemon/upgrade-socket.ts';
import { VERSION } from './version.ts';

const stdout = new StreamOutput(process.stdout, process.stderr);

export async function serve(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    stdout.line(serveHelp());
    return 0;
  }
  process.title = 'berth supervisor';
  const config = loadConfig(argv);
  setLogLevel(config.logLevel);
  const paths = dataPaths(config.dataDir);
  await fs.mkdir(paths.root, { recursive: true, mode: 0o700 });
  await fs.mkdir(paths.tmp, { recursive: true, mode: 0o700 });
  await claimDataDir(paths.lock);
  const releaseLock = () => fs.rm(paths.lock, { force: true });

  let sockets;
  try {
    sockets = await holdSockets({ http: config.httpPort, https: config.httpsPort, ssh: config.sshPort }, config.bindHost);
  } catch (e) {
    await releaseLock();
    throw e;
  }
  const closeSockets = () => {
    for (const socket of Object.values(sockets)) socket.close();
  };
  // The children bind nothing: they serve these sockets, and learn their real ports here.
  const ports = { http: sockets.http.port, https: sockets.https.port, ssh: sockets.ssh.port };
  const childArgv = [...argv, '--http-port', String(ports.http), '--https-port', String(ports.https), '--ssh-port', String(ports.ssh)];
  // An upgrade's default binary: the file now at the path this one was started from.
  const startPath = sea.isSea() ? process.execPath : undefined;
  const upgradeOptions = (request: UpgradeRequest): UpgradeOptions => {
    const binary = request.binary ?? startPath;
    if (!binary) throw new UserError('no_binary', 'this berth does not run from a single executable, so there is no default binary', { hint: 'give one with --binary PATH' });
    return { ...UPGRADE_DEFAULTS, ...request, binary };
  };
  const supervisor = new Supervisor({ command: selfCommand(), argv: childArgv, sockets, upgradeOptions });
  const upgrades = new UpgradeSocket(paths.supervisorSocket, (request, progress) => supervisor.upgrade(upgradeOptions(request), progress));

  const stopping = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const listen = parseListen(config.metricsListen, '--metrics-listen');
  const metrics = listen ? new MetricsServer({ ...listen, gather: () => supervisor.metrics() }) : undefined;
  const shutdown = async () => {
    await metrics?.stop();
    await upgrades.stop();
    await supervisor.stop();
    closeSockets();
    await releaseLock();
  };
  // Before the children start: a metrics address in use stops berth serve at once.
  try {
    await metrics?.start();
  } catch (e) {
    closeSockets();
    await releaseLock();
    throw e;
  }
  try {
    const started = await Promise.race([supervisor.start().then(() => undefined), stopping]);
    if (started !== undefined) {
      log.info('berth_stopping', { signal: started });
      await shutdown();
      return 0;
    }
  } catch (e) {
    await shutdown();
    if (e instanceof ChildFailed) return e.exitCode || 1;
    throw e;
  }

  await upgrades.start().catch(async (e: unknown) => {
    await shutdown();
    throw e;
  });
  process.on('SIGUSR2', () => {
    log.info('upgrade_requested', { by: 'SIGUSR2' });
    void Promise.resolve()
      .then(() => supervisor.upgrade(upgradeOptions({}), (line) => log.info('upgrade_step', { step: line })))
      .then(
        (result) => log.info('upgrade_result', { ...result }),
        (e: unknown) => log.error('upgrade_refused', { error: e }),
      );
  });
  log.info('berth_started', { version: VERSION, node: process.version, pid: process.pid, dataDir: config.dataDir, httpPort: ports.http, httpsPort: ports.https, sshPort: ports.ssh, metricsPort: metrics?.port, domain: config.domain, docker: config.dockerHost, hostKey: supervisor.facts?.hostKeyFingerprint });
  const facts = supervisor.facts;
  stdout.section(`berth ${VERSION} is serving`);
  stdout.detail(`apps:     http://APP.${config.domain}${ports.http === 80 ? '' : `:${ports.http}`}`);
  stdout.detail(`https:    ${facts?.acme.enabled ? `port ${ports.https}, certificates from ${facts.acme.directory} for ${facts.acme.email}` : `port ${ports.https}, certificates only from certs:add (set --acme-email for automatic ones)`}`);
  stdout.detail(`git push: ssh://berth@HOST:${ports.ssh}/APP   (host key ${facts?.hostKeyFingerprint ?? 'unknown'})`);
  stdout.detail(`data:     ${config.dataDir}`);
  if (metrics) stdout.detail(`metrics:  http://${listen!.host.includes(':') ? `[${listen!.host}]` : listen!.host}:${metrics.port}/metrics`);
  if (facts?.noKeys) stdout.detail(`no SSH keys yet: berth --data-dir ${config.dataDir} ssh-keys:add NAME ~/.ssh/id_ed25519.pub`);

  const signal = await stopping;
  log.info('berth_stopping', { signal });
  await shutdown();
  log.info('berth_stopped', {});
  return 0;
}

// One daemon per data dir: a pid file that a live process holds.
async function claimDataDir(lockFile: string): Promise<void> {
  let pid: number | undefined;
  try {
    pid = Number((await fs.readFile(lockFile, 'utf8')).trim());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (pid && pid !== process.pid && isAlive(pid)) {
    throw new UserError('data_dir_in_use', `another berth serve (pid ${pid}) is using this data dir`, { hint: 'stop it first, or give another --data-dir' });
  }
  await fs.writeFile(lockFile, `${process.pid}\n`, { mode: 0o600 });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function serveHelp(): string {
  const lines = ['Usage: berth serve [FLAGS]', '', 'Runs the platform: SSH for git push and commands, the HTTP proxy, the deploy pipeline.', '', 'Flags (each also settable as the environment variable shown):'];
  for (const f of SERVE_FLAGS) lines.push(`  ${(f.flag + ' ' + (f.kind === 'port' ? 'PORT' : 'VALUE')).padEnd(22)} ${f.env.padEnd(20)} ${f.describe}`);
  return lines.join('\n');
}

