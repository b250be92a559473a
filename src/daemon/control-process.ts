// The control plane (`berth __control`, started by the supervisor), and the composition root of
// everything but the proxy: state, the Docker engine, the orchestrator, certificates and ACME
// orders, the application layer around the one per-app lock, SSH on the socket the supervisor
// handed over, the control socket. What the proxy serves goes to it through the supervisor
// (proxy-link.ts). Stops in reverse on SIGTERM or after a failed start.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { ControlServer } from '../cli/control-server.ts';
import { COMMANDS, runCommand } from '../cli/registry.ts';
import { dataPaths, dockerSshSettings, loadConfig, parseListen, sshLoginLimitsOf } from '../config.ts';
import { createExecHandler } from '../git/exec-router.ts';
import { loadOrCreateHostKey } from '../git/host-key.ts';
import { KeyStore } from '../git/key-store.ts';
import { SshServer } from '../git/ssh-server.ts';
import { log, setLogLevel } from '../log.ts';
import { ControlMetrics, type CertificateExpiry } from '../metrics/control-metrics.ts';
import { DockerEngine } from '../orchestrator/docker-engine.ts';
import { DockerSwarm } from '../orchestrator/docker-swarm.ts';
import type { DockerSshSettings } from '../orchestrator/docker-ssh.ts';
import { ClusterRegistry } from '../orchestrator/cluster-registry.ts';
import { Orchestrator } from '../orchestrator/orchestrator.ts';
import { SERVICE_KINDS } from '../services/kinds/index.ts';
import { CertificateManager } from '../proxy/tls/certificate-manager.ts';
import { writeFileAtomic } from '../state/atomic-file.ts';
import { AppLock } from '../platform/app-lock.ts';
import { createPlatform } from '../platform/platform.ts';
import { EdgeRoutePublisher, OWN_ROUTE } from '../platform/route-publisher.ts';
import { publicOrigin } from '../public-origin.ts';
import { loadState, type State } from '../platform/state.ts';
import { readAll } from '../read-all.ts';
import { VERSION } from '../version.ts';
import { UserError } from '../errors.ts';
import { CONTROL_FDS, ownStatus, type FromChild, type ProcessStatus, type ToChild, type UpgradeRequest } from './messages.ts';
import type { UpgradeResult } from './supervisor.ts';
import { ProxyLink } from './proxy-link.ts';
import { exitSoon, untilStopped } from './role-lifecycle.ts';
import { DashboardServer } from '../dashboard/dashboard-server.ts';
import { DashboardLinks, dashboardHost, LoginLinks } from '../dashboard/login-links.ts';
import { RequestHistory } from '../dashboard/request-history.ts';
import type { MetricFamily } from '../metrics/registry.ts';
import { HELLO_ANSWER_MS, TakeOver } from './take-over.ts';

export async function runControl(argv: string[]): Promise<number> {
  process.title = 'berth control';
  const config = loadConfig(argv);
  setLogLevel(config.logLevel);
  const paths = dataPaths(config.dataDir);
  const send = (message: FromChild) => {
    if (process.connected) process.send!(message);
  };

  const link = new ProxyLink((message) => send({ t: 'to-proxy', message }));
  // Counts from the start; the certificates are known once the manager is made.
  let served: () => CertificateExpiry[] = () => [];
  const metrics = new ControlMetrics(() => served());
  const statusAsks = new Map<number, (processes: ProcessStatus[]) => void>();
  const metricAsks = new Map<number, (families: MetricFamily[]) => void>();
  let nextAsk = 1;
  let retire!: (deadlineMs: number) => void;
  const retiring = new Promise<number>((resolve) => (retire = resolve));
  const takeOver = new TakeOver();
  let tookOver!: () => void;
  const told = new Promise<void>((resolve) => (tookOver = resolve));
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  process.on('message', (message: ToChild) => {
    switch (message.t) {
      case 'hold':
        takeOver.hold();
        return answer();
      case 'take-over':
        tookOver();
        return answer();
      case 'retire':
        return retire(message.deadlineMs);
      case 'resync':
        return link.sendAll();
      case 'proxy-gone':
        return link.proxyGone();
      case 'from-proxy':
        return link.receive(message.message);
      case 'status':
        return send({ t: 'status', id: message.id, status: ownStatus('control', VERSION) });
      case 'metrics':
        return send({ t: 'metrics', id: message.id, families: metrics.registry.families() });
      case 'status-all': {
        const answer = statusAsks.get(message.id);
        statusAsks.delete(message.id);
        return answer?.(message.processes);
      }
      case 'metrics-all': {
        const answer = metricAsks.get(message.id);
        metricAsks.delete(message.id);
        return answer?.(message.families);
      }
      case 'upgrade-step':
        return upgrades.get(message.id)?.progress(message.line);
      case 'upgrade-result': {
        const upgrade = upgrades.get(message.id);
        upgrades.delete(message.id);
        if (message.result) upgrade?.resolve(message.result);
        else upgrade?.reject(new UserError(message.error?.code ?? 'internal', message.error?.message ?? 'the upgrade failed', message.error?.hint ? { hint: message.error.hint } : {}));
        return;
      }
    }
  });
  /** Upgrades asked over SSH, running in the supervisor: this process relays their output. */
  const upgrades = new Map<number, { progress: (line: string) => void; resolve: (result: UpgradeResult) => void; reject: (e: Error) => void }>();
  const upgrade = (request: UpgradeRequest, progress: (line: string) => void) =>
    new Promise<UpgradeResult>((resolve, reject) => {
      const id = nextAsk++;
      upgrades.set(id, { progress, resolve, reject });
      send({ t: 'upgrade', id, request });
    });
  /** Every process of this daemon, as the supervisor sees them. */
  const daemonStatus = () =>
    new Promise<ProcessStatus[]>((resolve) => {
      const id = nextAsk++;
      statusAsks.set(id, resolve);
      send({ t: 'status-all', id });
    });

  /** Every process's metrics, as a scrape gets them (the supervisor gathers them); none after 5 s (a supervisor that does not know the question). */
  const daemonMetrics = () =>
    new Promise<MetricFamily[]>((resolve) => {
      const id = nextAsk++;
      const timer = setTimeout(() => {
        metricAsks.delete(id);
        resolve([]);
      }, 5000);
      metricAsks.set(id, (families) => {
        clearTimeout(timer);
        resolve(families);
      });
      send({ t: 'metrics-all', id });
    });

  let ssh: SshServer | undefined;
  let dashboard: DashboardServer | undefined;
  let control: ControlServer | undefined;
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((e) => log.error('stop_failed', { error: e }));
  };
  try {
    // SSH before the state, with the keys as they are now: a connection made while an upgrade's
    // old control plane finishes its work, or while this one starts, is taken and told why it waits.
    const hostKey = await loadOrCreateHostKey(paths.hostKeys);
    const keys = new KeyStore(paths.keys);
    // Read only: until it takes over, this process writes nothing (a retiring one may still).
    await keys.load({ readOnly: true });
    // Whether to hold or take over, known before the first connection: each is told the right reason.
    // A supervisor older than take-over does not answer: it starts a control plane only once the old one is gone.
    send({ t: 'hello' });
    await Promise.race([answered, new Promise((resolve) => setTimeout(resolve, HELLO_ANSWER_MS))]);
    ssh = new SshServer({ port: config.sshPort, bindHost: config.bindHost, fd: CONTROL_FDS.ssh, hostKey: hostKey.privateKey, keys, onExec: createExecHandler(takeOver.routes((name) => COMMANDS.some((c) => c.name === name))), authLimits: sshLoginLimitsOf(config) });
    await ssh.start();
    if (takeOver.phase === 'waiting') await told;
    takeOver.starting();
    log.info('control_taking_over', { pid: process.pid });
    // What the previous control plane wrote up to its end, keys included.
    const state: State = await loadState(config, { keys });
    const instance = await instanceId(paths.instance);
    const dockerSsh = dockerSshSettings(config);
    const engine = await DockerEngine.connect(config.dockerHost, instance, dockerSsh);
    // On --scheduler swarm the same engine is a Swarm manager's, or berth does not start.
    const swarm = config.scheduler === 'swarm' ? await DockerSwarm.connect(config.dockerHost, instance, dockerSsh) : undefined;
    if (swarm) {
      const manager = await swarm.manager();
      log.info('swarm_manager', { node: manager.nodeId, address: manager.address });
    }
    // On --scheduler docker an engine that manages a Swarm may hold berth's services from a run on the swarm scheduler: they go at start.
    const formerSwarm = swarm ? undefined : await managedSwarm(config.dockerHost, instance, dockerSsh);
    const dashboardListen = parseListen(config.dashboardListen, '--dashboard-listen');
    // berth.DOMAIN gets its certificate as an app's domain does, while the dashboard is on.
    // An app that holds berth.DOMAIN (named berth, or with it as a domain, from a state made
    // before berth kept the name) keeps it: the dashboard is then on the admin listener only.
    const dashboardHolder = () => state.domains.appOf(dashboardHost(config));
    const ownHosts = () => (dashboardListen && dashboardHolder() === undefined ? [{ name: OWN_ROUTE, hostname: dashboardHost(config) }] : []);
    const certificates = new CertificateManager({ config, certsDir: paths.certs, stateFile: paths.certState, apps: state.apps, domains: state.domains, ownHosts, maxOrdersPerHour: config.maxAppAcmeOrders });
    stops.push(() => certificates.stop());
    served = () => certificates.cache.expiries();
    link.attach({ settings: () => state.proxySettings.resolved(), certificates: certificates.cache, challenges: certificates.challenges });
    state.proxySettings.onChange(() => link.settingsChanged());
    await certificates.load();
    const appUrl = (app: string) => {
      const host = state.domains.hostnames(app)[0] ?? `${app}.${config.domain}`;
      return publicOrigin(host, config, certificates.hasCertificate(host));
    };
    const publisher = new EdgeRoutePublisher({ edge: link, apps: state.apps, domains: state.domains, certificates });
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
      services: state.services,
      serviceKinds: SERVICE_KINDS,
      appUrl,
      // On a Swarm, releases reach every node through the cluster's own registry, by digest.
      ...(swarm ? { swarm, distributor: new ClusterRegistry({ engine, swarm, image: config.registryImage, prefix: config.network, credentialFile: paths.registryCredential }) } : {}),
      ...(formerSwarm ? { formerSwarm } : {}),
    });
    const logins = new LoginLinks();
    const dashboardLinks = dashboardListen
      ? new DashboardLinks({ store: logins, config, hasCertificate: (host) => certificates.hasCertificate(host), localOrigin: () => dashboard?.localOrigin(), holder: dashboardHolder })
      : undefined;
    const platform = createPlatform({ state, locks, orchestrator, certificates, daemonStatus, upgrade, ...(dashboardLinks ? { dashboard: dashboardLinks } : {}), ...(swarm ? { swarm, nodeMover: orchestrator } : {}) });
    state.domains.onChange((app, forgotten) => publisher.domainsChanged(app, forgotten));
    await orchestrator.start();
    stops.push(() => orchestrator.stop());
    // Scheduled backups of the services (adopted with the apps just now).
    platform.services.startBackups();
    stops.push(() => platform.services.stopBackups());
    // The containers are adopted: the proxy gets everything now, and again whenever it (re)starts
    // (the supervisor's resync). Before, it kept what the previous control plane sent.
    link.goLive();
    await certificates.start();
    takeOver.open(
      {
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
      },
      (key) => state.keys.byFingerprint(key.fingerprint),
    );
    if (dashboardListen) {
      const history = new RequestHistory((name) => state.apps.get(name)?.id);
      const server = new DashboardServer({ state, platform, appUrl, history, links: logins }, dashboardListen);
      try {
        await server.start();
        // The chart history is kept only for a dashboard that runs.
        history.start(daemonMetrics);
        stops.push(async () => history.stop());
        stops.push(async () => {
          publisher.publishOwn(dashboardHost(config), undefined);
          await server.stop();
        });
        const holder = dashboardHolder();
        if (holder === undefined) publisher.publishOwn(dashboardHost(config), { id: 'berth-dashboard', ...server.target() });
        else {
          log.error('dashboard_host_conflict', {
            host: dashboardHost(config),
            app: holder,
            hint: `app ${holder} serves ${dashboardHost(config)} (from before berth kept the name): the dashboard is on its admin listener only until the app is renamed (apps:rename) or the domain removed, and berth restarted`,
          });
        }
        // Served (the dashboard command gives links) only once its route is published.
        dashboard = server;
      } catch (e) {
        // berth serves apps without its dashboard; the operator reads why in the log.
        log.error('dashboard_not_started', { error: e });
      }
    }
    control = new ControlServer(paths.socket, { state, daemon: platform });
    const controlServer = control;
    stops.push(() => controlServer.stop());
    await control.start();

    log.info('control_started', { version: VERSION, pid: process.pid, dataDir: config.dataDir, domain: config.domain, docker: config.dockerHost, hostKey: hostKey.fingerprint });
    send({
      t: 'ready',
      facts: {
        hostKeyFingerprint: hostKey.fingerprint,
        acme: { enabled: certificates.acmeEnabled, directory: config.acmeDirectory, email: config.acmeEmail },
        noKeys: state.keys.list().length === 0,
      },
    });
  } catch (e) {
    await ssh?.stop();
    await stopAll();
    exitSoon();
    throw e;
  }

  const why = await Promise.race([untilStopped(), retiring]);
  if (typeof why === 'number') {
    // An upgrade: the new control plane takes new SSH connections and commands once this one has
    // gone; pushes and commands running here finish first, up to the deadline.
    log.info('control_retiring', { deadlineMs: why });
    ssh!.stopAccepting();
    dashboard?.stopAccepting();
    await control!.stopAccepting();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, why)));
    await Promise.race([Promise.all([ssh!.idle(upgrades.size), control!.idle(), dashboard?.idle()]), deadline]);
    log.info('control_stopping', { why: 'retired' });
    await stopAll();
    // The new control plane may start now; an upgrade asked here still prints its outcome.
    send({ t: 'retired' });
    await Promise.race([ssh!.idle(), deadline]);
    clearTimeout(timer);
  } else {
    log.info('control_stopping', { why });
    await ssh?.stop();
    await stopAll();
  }
  await ssh?.stop();
  metrics.stop();
  log.info('control_stopped', {});
  exitSoon();
  return 0;
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

/** The Swarm the engine at `dockerHost` manages, or undefined when it manages none (not in a Swarm, a worker, or not answering about it). */
async function managedSwarm(dockerHost: string, instance: string, ssh: DockerSshSettings): Promise<DockerSwarm | undefined> {
  try {
    const swarm = await DockerSwarm.connect(dockerHost, instance, ssh);
    await swarm.manager();
    return swarm;
  } catch {
    return undefined;
  }
}
