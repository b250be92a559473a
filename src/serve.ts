// The daemon, and berth's composition root: wires every long-lived component in order (state,
// Docker engine, proxy, orchestrator, the application layer around the one per-app lock, SSH,
// control socket), stops them in reverse on SIGTERM/SIGINT or after a failed start.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { ControlServer } from './cli/control-server.ts';
import { runCommand } from './cli/registry.ts';
import { StreamOutput } from './ui/output.ts';
import { dataPaths, loadConfig, SERVE_FLAGS } from './config.ts';
import { UserError } from './errors.ts';
import { createExecHandler } from './git/exec-router.ts';
import { loadOrCreateHostKey } from './git/host-key.ts';
import { SshServer } from './git/ssh-server.ts';
import { log, setLogLevel } from './log.ts';
import { DockerEngine } from './orchestrator/docker-engine.ts';
import { Orchestrator } from './orchestrator/orchestrator.ts';
import { EdgeServer } from './proxy/edge-server.ts';
import { CertificateManager } from './proxy/tls/certificate-manager.ts';
import { createChallengeResponder, createHttpsRedirect } from './proxy/tls/https-redirect.ts';
import { TlsListener } from './proxy/tls/tls-listener.ts';
import { writeFileAtomic } from './state/atomic-file.ts';
import { AppLock } from './platform/app-lock.ts';
import { createPlatform } from './platform/platform.ts';
import { EdgeRoutePublisher } from './platform/route-publisher.ts';
import { loadState } from './platform/state.ts';
import { readAll } from './read-all.ts';
import { VERSION } from './version.ts';

const stdout = new StreamOutput(process.stdout, process.stderr);

export async function serve(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    stdout.line(serveHelp());
    return 0;
  }
  const config = loadConfig(argv);
  setLogLevel(config.logLevel);
  const paths = dataPaths(config.dataDir);
  await fs.mkdir(paths.root, { recursive: true, mode: 0o700 });
  await fs.mkdir(paths.tmp, { recursive: true, mode: 0o700 });
  await claimDataDir(paths.lock);

  const stops: Array<() => Promise<void>> = [async () => fs.rm(paths.lock, { force: true })];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((e) => log.error('stop_failed', { error: e }));
  };
  try {
    const state = await loadState(config);
    const hostKey = await loadOrCreateHostKey(paths.hostKeys);
    const engine = await DockerEngine.connect(config.dockerHost, await instanceId(paths.instance));
    const edge = new EdgeServer({ httpPort: config.httpPort, bindHost: config.bindHost, accessLogFile: paths.accessLog });
    edge.setAppSettings(state.proxySettings.resolved());
    state.proxySettings.onChange((settings) => edge.setAppSettings(settings));
    stops.push(() => edge.stop());
    const certificates = new CertificateManager({ config, certsDir: paths.certs, stateFile: paths.certState, apps: state.apps, domains: state.domains });
    stops.push(() => certificates.stop());
    await certificates.load();
    const tls = new TlsListener({ port: config.httpsPort, bindHost: config.bindHost, handler: edge, secureContext: (name, acmeTls) => certificates.secureContext(name, acmeTls) });
    edge.setChallengeResponder(createChallengeResponder(certificates.challenges));
    edge.setHttpsRedirect(createHttpsRedirect({ hasCertificate: (host) => certificates.hasCertificate(host), httpsPort: () => tls.port }));
    const publisher = new EdgeRoutePublisher({ edge, apps: state.apps, domains: state.domains, certificates });
    // The one per-app lock: the application layer holds it around every change of an app, the
    // orchestrator takes it for the work it starts itself (adoption, re-routing a restarted container).
    const locks = new AppLock();
    const orchestrator = new Orchestrator({
      engine,
      locks,
      apps: state.apps,
      domains: state.domains,
      config,
      paths,
      publisher,
      appUrl: (app) => {
        const host = state.domains.hostnames(app)[0] ?? `${app}.${config.domain}`;
        if (certificates.hasCertificate(host)) return `https://${host}${tls.port === 443 ? '' : `:${tls.port}`}`;
        return `http://${host}${edge.httpPort === 80 ? '' : `:${edge.httpPort}`}`;
      },
    });
    const platform = createPlatform({ state, locks, orchestrator, certificates });
    state.domains.onChange((app, forgotten) => publisher.domainsChanged(app, forgotten));
    await orchestrator.start();
    stops.push(() => orchestrator.stop());
    await edge.start();
    stops.push(() => tls.stop());
    await tls.start();
    await certificates.start();
    const onExec = createExecHandler({
      push: (app, session) => platform.releases.push(app, session),
      command: (words, session) =>
        runCommand(words, {
          out: session.out,
          caller: { kind: 'ssh', key: session.key, address: session.address },
          state,
          daemon: platform,
          cwd: '/',
          signal: session.signal,
          readStdin: () => readAll(session.channel),
          stdin: () => session.channel,
          stderr: session.stderr,
          ...(session.terminal ? { terminal: session.terminal } : {}),
        }),
    });
    const ssh = new SshServer({ port: config.sshPort, bindHost: config.bindHost, hostKey: hostKey.privateKey, keys: state.keys, onExec });
    stops.push(() => ssh.stop());
    await ssh.start();
    config.sshPort = ssh.port; // the port bound, when 0 asked for any free one: commands print it
    const control = new ControlServer(paths.socket, { state, daemon: platform });
    stops.push(() => control.stop());
    await control.start();

    log.info('berth_started', { version: VERSION, node: process.version, dataDir: config.dataDir, httpPort: edge.httpPort, httpsPort: tls.port, sshPort: ssh.port, domain: config.domain, docker: config.dockerHost, hostKey: hostKey.fingerprint });
    stdout.section(`berth ${VERSION} is serving`);
    stdout.detail(`apps:     http://APP.${config.domain}${edge.httpPort === 80 ? '' : `:${edge.httpPort}`}`);
    stdout.detail(`https:    ${certificates.acmeEnabled ? `port ${tls.port}, certificates from ${config.acmeDirectory} for ${config.acmeEmail}` : `port ${tls.port}, certificates only from certs:add (set --acme-email for automatic ones)`}`);
    stdout.detail(`git push: ssh://berth@HOST:${ssh.port}/APP   (host key ${hostKey.fingerprint})`);
    stdout.detail(`data:     ${config.dataDir}`);
    if (state.keys.list().length === 0) stdout.detail(`no SSH keys yet: berth --data-dir ${config.dataDir} ssh-keys:add NAME ~/.ssh/id_ed25519.pub`);
  } catch (e) {
    await stopAll();
    throw e;
  }

  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info('berth_stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  await stopAll();
  log.info('berth_stopped', {});
  // Pooled sockets to the engine may linger; nothing is left to finish once the components stopped.
  setTimeout(() => process.exit(0), 2000).unref();
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

// A random id made once per data dir; it labels this daemon's Docker objects.
async function instanceId(file: string): Promise<string> {
  try {
    const id = (await fs.readFile(file, 'utf8')).trim();
    if (/^[a-f0-9]{12}$/.test(id)) return id;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = randomBytes(6).toString('hex');
  await writeFileAtomic(file, id + '\n');
  return id;
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

