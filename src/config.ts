// berth serve's configuration: one typed object, every field's default documented where it is
// declared, each flag mirrored by a BERTH_* environment variable; validation reports every
// problem at once.
import path from 'node:path';
import { UserError } from './errors.ts';
import { imageReferenceProblem } from './image-reference.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';
import { DEFAULT_PUSH_LIMITS, type PushLimits } from './push-limits.ts';
import { DEFAULT_MAX_APP_ACME_ORDERS, DEFAULT_MAX_APP_DOMAINS } from './domain-caps.ts';

export interface Config {
  /** All state: keys, apps, repositories, certificates. Default: /var/lib/berth as root, ./.berth otherwise. */
  dataDir: string;
  /** Plain HTTP listener of the proxy. Default 80 as root, 8080 otherwise. */
  httpPort: number;
  /** TLS listener of the proxy (used once certificates exist). Default 443 as root, 8443 otherwise. */
  httpsPort: number;
  /** Embedded SSH server for git push and admin commands. Default 2222. */
  sshPort: number;
  /** Address the listeners bind to. Default 0.0.0.0 (all IPv4 addresses). */
  bindHost: string;
  /** Apps are served at APP.DOMAIN. Default: localhost (so http://APP.localhost:PORT works on this machine). */
  domain: string;
  /** Docker engine: a unix socket path, tcp://host:port or ssh://user@host[:port]. Default: DOCKER_HOST, else /var/run/docker.sock. */
  dockerHost: string;
  /** Private key berth logs in with to an ssh:// --docker-host. Default '': ~/.ssh/id_ed25519, id_ecdsa or id_rsa (and SSH_AUTH_SOCK's agent). */
  dockerSshKey: string;
  /** known_hosts file an ssh:// --docker-host's key is checked against. Default '': ~/.ssh/known_hosts. */
  dockerSshKnownHosts: string;
  /**
   * Where apps' processes run: `docker`, containers on the one engine of --docker-host; `swarm`,
   * services of the Docker Swarm whose manager's engine --docker-host is (docs/swarm.md). Default: docker.
   */
  scheduler: Scheduler;
  /**
   * The prefix of the Docker bridge networks apps run on, one each: PREFIX-INSTANCE-APP. Containers
   * an older berth started on the shared network of this name move at their app's next deploy. Default: berth.
   */
  network: string;
  /**
   * The image buildpack builds run in, and the base of the images they make (Heroku's stack).
   * Default: heroku/heroku:24-build. An app may use another (buildpacks:set-stack).
   */
  stackImage: string;
  /**
   * Buildpacks tried in order when an app names none: git URLs (`#ref` allowed), file:// URLs or
   * absolute paths. Default: the official Heroku buildpacks, as herokuish lists them (DEFAULT_BUILDPACKS).
   */
  buildpacks: string[];
  /** Memory limit of a build (buildpack container or Dockerfile build), in bytes. Default 1 GiB. */
  buildMemory: number;
  /** Memory limit of each app container (dyno or one-off) whose app sets none (resource:limit), in bytes, swap included. Default 512 MiB. */
  containerMemory: number;
  /** Processes and threads each app container may hold at once, unless its app sets another limit (resource:limit --pids). Default 512. */
  containerPids: number;
  /** Release images kept per app; older ones are removed after a deploy. Default 5. */
  keepImages: number;
  /**
   * The uptime, in ms, that the default health checks wait for (a web process without app.json
   * healthchecks, after it accepts connections; any other process) unless the app sets its own
   * (`checks:set APP wait N`). Default 10 s, as Dokku's DOKKU_DEFAULT_CHECKS_WAIT.
   */
  checksWait: number;
  /** ACME directory certificates come from. Default: Let's Encrypt's production directory. */
  acmeDirectory: string;
  /** Contact address of the ACME account; automatic HTTPS is on only when it is set. Default: unset (''). */
  acmeEmail: string;
  /** PEM file of extra CA certificates to trust when talking to the ACME server (a private CA, Pebble). Default: unset (''). */
  acmeCaFile: string;
  /** The least important lines the daemon's log writes: debug, info, warn or error. Default: info. */
  logLevel: LogLevel;
  /** Pack bytes one push may send; a larger pack is refused as it arrives. Default 2 GiB. */
  maxPackBytes: number;
  /** Inflated bytes of one pushed object, a delta's result included; refused from its header, before inflating. Default 256 MiB. */
  maxObjectBytes: number;
  /** Inflated bytes of all objects of one push together, deltas' results included; refused as the pack arrives. Default 16 GiB. */
  maxPushInflatedBytes: number;
  /** Deltas between a pushed object and the whole object it is rebuilt from (git's own packs stay under 4096, 50 by default). Default 1000. */
  maxDeltaDepth: number;
  /** Objects in one push's pack; refused from the pack's header. Default 1 000 000. */
  maxPushObjects: number;
  /** Ref updates in one push. Default 10 000. */
  maxPushRefs: number;
  /** Domains one app may have, its default APP.DOMAIN included; the admin is held to it too. Default 20 (DEFAULT_MAX_APP_DOMAINS). */
  maxAppDomains: number;
  /** ACME orders one app's domains may place in any hour, renewals and retries included. Default 20 (DEFAULT_MAX_APP_ACME_ORDERS). */
  maxAppAcmeOrders: number;
  /**
   * Hosts buildpack fetches may reach although they are not public addresses (loopback, private,
   * link-local, this server's own), by host name or address as the URL names it. Default: none.
   */
  fetchAllowHosts: string[];
  /**
   * How long a push may send nothing while berth waits for its commands or pack, in ms; then it
   * fails and changes nothing. Default 120 s: git compresses a large push before it sends a byte.
   */
  pushTimeout: number;
  /** Disk one app's repository and build cache may use together; a push beyond it is refused as the pack arrives. Default 2 GiB. */
  appDiskQuota: number;
  /** Free space berth keeps on the data dir's file system: a push that would go below is refused. Default 1 GiB. */
  minFreeDisk: number;
  /** How long an SSH connection may take to authenticate before it is closed, in ms; 0 never. Default 30 s (OpenSSH: 120 s). */
  sshLoginGraceTime: number;
  /** SSH connections not yet authenticated in all; more are closed at once. Default 100 (OpenSSH's MaxStartups). */
  sshMaxStartups: number;
  /** SSH connections not yet authenticated from one address; more are closed at once. Default 10. */
  sshMaxStartupsPerAddress: number;
  /** The image of new postgres services that name none (postgres:create --image). Default: unset (''), the kind's own image, postgres:17, pulled on first use. */
  postgresImage: string;
  /** The image of new redis services that name none (redis:create --image). Default: unset (''), the kind's own image, redis:7, pulled on first use. */
  redisImage: string;
  /** On --scheduler swarm, the image of the cluster registry (its store on the manager and its mirror on every node). Default registry:2, pulled on first use. */
  registryImage: string;
  /** Where the supervisor serves Prometheus metrics at /metrics, HOST:PORT; 'off' or '' turns it off. Default 127.0.0.1:9180. */
  metricsListen: string;
  /** Where the control plane serves the dashboard (also reached at berth.DOMAIN through the proxy), HOST:PORT; 'off' or '' turns it off. Default 127.0.0.1:9181. */
  dashboardListen: string;
}

/** The official Heroku buildpacks, in herokuish's detection order. */
export const DEFAULT_BUILDPACKS: readonly string[] = ['ruby', 'nodejs', 'clojure', 'python', 'java', 'gradle', 'scala', 'php', 'go'].map(
  (name) => `https://github.com/heroku/heroku-buildpack-${name}.git`,
);

/** Let's Encrypt's production ACME directory: the default --acme-directory. */
export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

/** HOST:PORT for an admin listener (--metrics-listen, --dashboard-listen); an IPv6 host in brackets. */
const LISTEN = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/;
const LISTEN_EXAMPLES = { '--metrics-listen': '127.0.0.1:9180', '--dashboard-listen': '127.0.0.1:9181' } as const;

/** An admin listener's `HOST:PORT` → its parts; undefined for off (or empty); a UserError naming `flag` when it is neither. */
export function parseListen(value: string, flag: keyof typeof LISTEN_EXAMPLES): { host: string; port: number } | undefined {
  if (value === '' || value === 'off') return undefined;
  const m = LISTEN.exec(value);
  const port = Number(m?.[2]);
  if (!m || port > 65535) {
    throw new UserError('invalid_listen', `${flag}: "${value}" is not HOST:PORT (such as ${LISTEN_EXAMPLES[flag]}) or off`, { hint: `give an address and port such as ${LISTEN_EXAMPLES[flag]}, or off` });
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** Where apps' processes run (--scheduler). */
export const SCHEDULERS = ['docker', 'swarm'] as const;
export type Scheduler = (typeof SCHEDULERS)[number];

interface FlagSpec {
  key: keyof Config;
  flag: string;
  env: string;
  kind: 'string' | 'port' | 'list' | 'bytes' | 'count' | 'seconds' | 'level' | 'choice';
  /** The largest value of a 'count' flag. Default 1000. */
  max?: number;
  /** The values a 'choice' flag takes. */
  choices?: readonly string[];
  /** For flags whose value may be empty to mean "unset" (they default to unset). */
  optional?: boolean;
  /** A 'list' flag that may be given more than once: the values add up. */
  repeatable?: boolean;
  describe: string;
}

export const SERVE_FLAGS: readonly FlagSpec[] = [
  { key: 'dataDir', flag: '--data-dir', env: 'BERTH_DATA_DIR', kind: 'string', describe: 'directory holding all state (default /var/lib/berth as root, ./.berth otherwise)' },
  { key: 'httpPort', flag: '--http-port', env: 'BERTH_HTTP_PORT', kind: 'port', describe: 'HTTP listener port (default 80 as root, 8080 otherwise)' },
  { key: 'httpsPort', flag: '--https-port', env: 'BERTH_HTTPS_PORT', kind: 'port', describe: 'HTTPS listener port (default 443 as root, 8443 otherwise)' },
  { key: 'sshPort', flag: '--ssh-port', env: 'BERTH_SSH_PORT', kind: 'port', describe: 'SSH port for git push and commands (default 2222)' },
  { key: 'bindHost', flag: '--bind', env: 'BERTH_BIND', kind: 'string', describe: 'address the listeners bind to (default 0.0.0.0)' },
  { key: 'domain', flag: '--domain', env: 'BERTH_DOMAIN', kind: 'string', describe: 'apps are served at APP.DOMAIN (default localhost)' },
  { key: 'dockerHost', flag: '--docker-host', env: 'BERTH_DOCKER_HOST', kind: 'string', describe: 'Docker engine: a socket, tcp://host:port or ssh://user@host[:port] (default $DOCKER_HOST or /var/run/docker.sock)' },
  { key: 'dockerSshKey', flag: '--docker-ssh-key', env: 'BERTH_DOCKER_SSH_KEY', kind: 'string', optional: true, describe: 'private key berth logs in with to an ssh:// --docker-host (default ~/.ssh/id_ed25519, id_ecdsa or id_rsa, whichever exists; an agent through SSH_AUTH_SOCK if set)' },
  { key: 'dockerSshKnownHosts', flag: '--docker-ssh-known-hosts', env: 'BERTH_DOCKER_SSH_KNOWN_HOSTS', kind: 'string', optional: true, describe: 'known_hosts file the host key of an ssh:// --docker-host must be in (default ~/.ssh/known_hosts)' },
  { key: 'scheduler', flag: '--scheduler', env: 'BERTH_SCHEDULER', kind: 'choice', choices: SCHEDULERS, describe: 'where apps run: docker (containers on the engine of --docker-host) or swarm (services of the Docker Swarm whose manager that engine is; docs/swarm.md) (default docker)' },
  { key: 'network', flag: '--network', env: 'BERTH_NETWORK', kind: 'string', describe: 'prefix of the Docker networks apps run on, one each: PREFIX-INSTANCE-APP (default berth)' },
  { key: 'stackImage', flag: '--stack-image', env: 'BERTH_STACK_IMAGE', kind: 'string', describe: 'image buildpack builds run in and build on (default heroku/heroku:24-build)' },
  { key: 'buildpacks', flag: '--buildpacks', env: 'BERTH_BUILDPACKS', kind: 'list', describe: 'comma-separated buildpack URLs tried when an app names none (default: the official Heroku buildpacks)' },
  { key: 'buildMemory', flag: '--build-memory', env: 'BERTH_BUILD_MEMORY', kind: 'bytes', describe: 'memory limit of a build, e.g. 512m or 2g (default 1g)' },
  { key: 'containerMemory', flag: '--container-memory', env: 'BERTH_CONTAINER_MEMORY', kind: 'bytes', describe: 'memory limit of each app container (swap included) unless the app sets its own with resource:limit (default 512m)' },
  { key: 'containerPids', flag: '--container-pids', env: 'BERTH_CONTAINER_PIDS', kind: 'count', max: 1_000_000, describe: 'processes and threads each app container may run at once unless the app sets its own with resource:limit --pids (default 512)' },
  { key: 'keepImages', flag: '--keep-images', env: 'BERTH_KEEP_IMAGES', kind: 'count', describe: 'release images kept per app for rollback (default 5)' },
  { key: 'checksWait', flag: '--checks-wait', env: 'BERTH_CHECKS_WAIT', kind: 'seconds', describe: 'probation: seconds a new release serves while the old one is kept running, ready to take the route back; per app: checks:set APP wait N (default 10)' },
  { key: 'acmeEmail', flag: '--acme-email', env: 'BERTH_ACME_EMAIL', kind: 'string', optional: true, describe: 'contact address for the ACME account; turns on automatic HTTPS (default unset: HTTP only)' },
  { key: 'acmeDirectory', flag: '--acme-directory', env: 'BERTH_ACME_DIRECTORY', kind: 'string', describe: `ACME directory URL (default ${LETS_ENCRYPT_DIRECTORY})` },
  { key: 'maxPackBytes', flag: '--max-pack-size', env: 'BERTH_MAX_PACK_SIZE', kind: 'bytes', describe: 'largest pack one git push may send, e.g. 500m (default 2g)' },
  { key: 'maxObjectBytes', flag: '--max-object-size', env: 'BERTH_MAX_OBJECT_SIZE', kind: 'bytes', describe: 'largest object a git push may hold once inflated, a delta\'s result included (default 256m)' },
  { key: 'maxPushInflatedBytes', flag: '--max-push-inflated-size', env: 'BERTH_MAX_PUSH_INFLATED_SIZE', kind: 'bytes', describe: 'most bytes the objects of one git push may inflate to together, deltas\' results included (default 16g)' },
  { key: 'maxDeltaDepth', flag: '--max-delta-depth', env: 'BERTH_MAX_DELTA_DEPTH', kind: 'count', max: 4095, describe: 'longest delta chain a git push may hold (default 1000; git makes at most 4095)' },
  { key: 'maxPushObjects', flag: '--max-push-objects', env: 'BERTH_MAX_PUSH_OBJECTS', kind: 'count', max: 100_000_000, describe: 'most objects one git push may send (default 1000000)' },
  { key: 'maxPushRefs', flag: '--max-push-refs', env: 'BERTH_MAX_PUSH_REFS', kind: 'count', max: 1_000_000, describe: 'most refs one git push may update (default 10000)' },
  { key: 'maxAppDomains', flag: '--max-app-domains', env: 'BERTH_MAX_APP_DOMAINS', kind: 'count', max: 100_000, describe: `most domains one app may have, its default APP.DOMAIN included (default ${DEFAULT_MAX_APP_DOMAINS})` },
  { key: 'maxAppAcmeOrders', flag: '--max-app-acme-orders', env: 'BERTH_MAX_APP_ACME_ORDERS', kind: 'count', max: 100_000, describe: `most ACME orders one app's domains may place in an hour, renewals and retries included (default ${DEFAULT_MAX_APP_ACME_ORDERS})` },
  { key: 'pushTimeout', flag: '--push-timeout', env: 'BERTH_PUSH_TIMEOUT', kind: 'seconds', describe: 'seconds a git push may send nothing before it fails and changes nothing; 0 never (default 120)' },
  { key: 'appDiskQuota', flag: '--app-disk-quota', env: 'BERTH_APP_DISK_QUOTA', kind: 'bytes', describe: 'disk one app\'s repository and build cache may use together; a push beyond it is refused (default 2g)' },
  { key: 'minFreeDisk', flag: '--min-free-disk', env: 'BERTH_MIN_FREE_DISK', kind: 'bytes', describe: 'free space kept on the data dir\'s file system: pushes that would go below are refused (default 1g)' },
  { key: 'sshLoginGraceTime', flag: '--ssh-login-grace-time', env: 'BERTH_SSH_LOGIN_GRACE_TIME', kind: 'seconds', describe: 'seconds an SSH connection may take to authenticate before it is closed; 0 never (default 30)' },
  { key: 'sshMaxStartups', flag: '--ssh-max-startups', env: 'BERTH_SSH_MAX_STARTUPS', kind: 'count', max: 100_000, describe: 'SSH connections not yet authenticated in all; more are closed at once (default 100)' },
  { key: 'sshMaxStartupsPerAddress', flag: '--ssh-max-startups-per-address', env: 'BERTH_SSH_MAX_STARTUPS_PER_ADDRESS', kind: 'count', max: 100_000, describe: 'SSH connections not yet authenticated from one address; more are closed at once (default 10)' },
  { key: 'acmeCaFile', flag: '--acme-ca-file', env: 'BERTH_ACME_CA_FILE', kind: 'string', optional: true, describe: 'PEM file of extra CAs to trust for the ACME server, e.g. a private CA or Pebble (default unset)' },
  { key: 'fetchAllowHosts', flag: '--fetch-allow-host', env: 'BERTH_FETCH_ALLOW_HOST', kind: 'list', repeatable: true, describe: 'a host buildpack fetches may reach although it is not a public address (loopback, private, link-local, this server); repeatable, or comma-separated (default: none)' },
  { key: 'metricsListen', flag: '--metrics-listen', env: 'BERTH_METRICS_LISTEN', kind: 'string', optional: true, describe: 'HOST:PORT of the admin listener serving Prometheus metrics at /metrics; off turns it off (default 127.0.0.1:9180)' },
  { key: 'dashboardListen', flag: '--dashboard-listen', env: 'BERTH_DASHBOARD_LISTEN', kind: 'string', optional: true, describe: 'HOST:PORT of the admin listener serving the dashboard, which berth.DOMAIN also reaches through the proxy; off turns it off (default 127.0.0.1:9181)' },
  { key: 'postgresImage', flag: '--postgres-image', env: 'BERTH_POSTGRES_IMAGE', kind: 'string', optional: true, describe: 'image of new postgres services that name none with --image (default postgres:17, pulled on first use)' },
  { key: 'redisImage', flag: '--redis-image', env: 'BERTH_REDIS_IMAGE', kind: 'string', optional: true, describe: 'image of new redis services that name none with --image (default redis:7, pulled on first use)' },
  { key: 'registryImage', flag: '--registry-image', env: 'BERTH_REGISTRY_IMAGE', kind: 'string', describe: 'on --scheduler swarm: image of the registry berth runs for the cluster, on the manager and as a mirror on every node (default registry:2, pulled on first use; docs/swarm.md)' },
  { key: 'logLevel', flag: '--log-level', env: 'BERTH_LOG_LEVEL', kind: 'level', describe: 'least important log lines written: debug, info, warn or error (default info)' },
];

export function defaultConfig(env: NodeJS.ProcessEnv = process.env, isRoot = process.getuid?.() === 0): Config {
  return {
    dataDir: isRoot ? '/var/lib/berth' : path.resolve('.berth'),
    httpPort: isRoot ? 80 : 8080,
    httpsPort: isRoot ? 443 : 8443,
    sshPort: 2222,
    bindHost: '0.0.0.0',
    domain: 'localhost',
    dockerHost: env.DOCKER_HOST || '/var/run/docker.sock',
    dockerSshKey: '',
    dockerSshKnownHosts: '',
    scheduler: 'docker',
    network: 'berth',
    stackImage: 'heroku/heroku:24-build',
    buildpacks: [...DEFAULT_BUILDPACKS],
    buildMemory: 1024 ** 3,
    containerMemory: 512 * 1024 ** 2,
    containerPids: 512,
    keepImages: 5,
    checksWait: 10_000,
    acmeDirectory: LETS_ENCRYPT_DIRECTORY,
    acmeEmail: '',
    acmeCaFile: '',
    logLevel: 'info',
    maxPackBytes: DEFAULT_PUSH_LIMITS.packBytes,
    maxObjectBytes: DEFAULT_PUSH_LIMITS.objectBytes,
    maxPushInflatedBytes: DEFAULT_PUSH_LIMITS.inflatedBytes,
    maxDeltaDepth: DEFAULT_PUSH_LIMITS.deltaDepth,
    maxPushObjects: DEFAULT_PUSH_LIMITS.objects,
    maxPushRefs: DEFAULT_PUSH_LIMITS.refs,
    maxAppDomains: DEFAULT_MAX_APP_DOMAINS,
    maxAppAcmeOrders: DEFAULT_MAX_APP_ACME_ORDERS,
    fetchAllowHosts: [],
    pushTimeout: 120_000,
    appDiskQuota: 2 * 1024 ** 3,
    minFreeDisk: 1024 ** 3,
    // As DEFAULT_AUTH_LIMITS in src/git/auth-limiter.ts (test/config.test.ts holds them equal).
    sshLoginGraceTime: 30_000,
    sshMaxStartups: 100,
    sshMaxStartupsPerAddress: 10,
    metricsListen: '127.0.0.1:9180',
    dashboardListen: '127.0.0.1:9181',
    // Unset: each kind's own default image (src/services/kinds).
    postgresImage: '',
    redisImage: '',
    registryImage: 'registry:2',
  };
}

/**
 * Builds the config from defaults, then BERTH_* variables, then flags (flags win). Unknown
 * flags and bad values are all reported in one UserError, which names `command` (berth install
 * checks the serve flags it writes down with this too).
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, command = 'berth serve'): Config {
  const config = defaultConfig(env);
  const problems: string[] = [];
  const given = new Set<keyof Config>();
  const set = (spec: FlagSpec, raw: string, from: string) => {
    if (spec.kind === 'port') {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < 0 || n > 65535) problems.push(`${from}: "${raw}" is not a port number (0-65535)`);
      else (config[spec.key] as number) = n;
    } else if (spec.kind === 'list') {
      const items = raw.split(',').map((x) => x.trim()).filter(Boolean);
      if (items.length === 0) problems.push(`${from}: empty list`);
      else (config[spec.key] as string[]) = spec.repeatable && given.has(spec.key) ? [...(config[spec.key] as string[]), ...items] : items;
    } else if (spec.kind === 'bytes') {
      const n = parseBytes(raw);
      if (n === undefined || n < 4 * 1024 ** 2) problems.push(`${from}: "${raw}" is not a memory size of at least 4m (such as 512m or 2g)`);
      else (config[spec.key] as number) = n;
    } else if (spec.kind === 'count') {
      const n = Number(raw);
      const max = spec.max ?? 1000;
      if (!/^\d+$/.test(raw) || n < 1 || n > max) problems.push(`${from}: "${raw}" is not a whole number from 1 to ${max}`);
      else (config[spec.key] as number) = n;
    } else if (spec.kind === 'seconds') {
      const n = Number(raw);
      if (!/^\d+(\.\d+)?$/.test(raw) || n > 3600) problems.push(`${from}: "${raw}" is not a number of seconds from 0 to 3600`);
      else (config[spec.key] as number) = Math.round(n * 1000);
    } else if (spec.kind === 'level') {
      if (!(LOG_LEVELS as readonly string[]).includes(raw)) problems.push(`${from}: "${raw}" is not one of ${LOG_LEVELS.join(', ')}`);
      else (config[spec.key] as LogLevel) = raw as LogLevel;
    } else if (spec.kind === 'choice') {
      if (!spec.choices!.includes(raw)) problems.push(`${from}: "${raw}" is not one of ${spec.choices!.join(', ')}`);
      else (config[spec.key] as string) = raw;
    } else if (raw === '' && !spec.optional) problems.push(`${from}: empty value`);
    else (config[spec.key] as string) = raw;
  };
  for (const spec of SERVE_FLAGS) {
    const v = env[spec.env];
    if (v !== undefined && v !== '') set(spec, v, spec.env);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const spec = SERVE_FLAGS.find((s) => s.flag === name);
    if (!spec) {
      problems.push(`unknown flag "${arg}"`);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) problems.push(`${spec.flag} needs a value`);
    else set(spec, value, spec.flag);
    given.add(spec.key);
  }
  config.dataDir = path.resolve(config.dataDir);
  config.domain = config.domain.toLowerCase().replace(/\.$/, '');
  if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(config.domain)) {
    problems.push(`--domain: "${config.domain}" is not a valid DNS name`);
  }
  if (!/^[a-z][a-z0-9_.-]{0,62}$/i.test(config.network)) problems.push(`--network: "${config.network}" is not a valid Docker network name`);
  // Swarm service and overlay network names start with it, and must be DNS labels.
  else if (config.scheduler === 'swarm' && !/^[a-z][a-z0-9-]*$/i.test(config.network)) {
    problems.push(`--network: "${config.network}" has a "." or "_": with --scheduler swarm it starts Swarm service names, which must be DNS labels (letters, digits, -)`);
  }
  const registryImage = config.registryImage === '' ? undefined : imageReferenceProblem(config.registryImage);
  if (registryImage) problems.push(`--registry-image: ${registryImage} (such as registry:2 or registry.example.com/registry:2)`);
  if (config.acmeEmail !== '' && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(config.acmeEmail)) problems.push(`--acme-email: "${config.acmeEmail}" is not an email address`);
  if (!/^https?:\/\/[^\s/]+/i.test(config.acmeDirectory) || !URL.canParse(config.acmeDirectory)) problems.push(`--acme-directory: "${config.acmeDirectory}" is not an http(s) URL`);
  if (config.acmeCaFile !== '') config.acmeCaFile = path.resolve(config.acmeCaFile);
  if (config.dockerSshKey !== '') config.dockerSshKey = path.resolve(config.dockerSshKey);
  if (config.dockerSshKnownHosts !== '') config.dockerSshKnownHosts = path.resolve(config.dockerSshKnownHosts);
  if (config.dockerHost.startsWith('ssh:') && !/^ssh:\/\/([^@/\s]+@)?[^@/\s]+\/?$/.test(config.dockerHost)) problems.push(`--docker-host: "${config.dockerHost}" is not ssh://USER@HOST[:PORT]`);
  for (const [flag, value] of [['--metrics-listen', config.metricsListen], ['--dashboard-listen', config.dashboardListen]] as const) {
    try {
      parseListen(value, flag);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) {
    throw new UserError('invalid_config', `${command}: ${problems.length === 1 ? 'a problem' : `${problems.length} problems`} with the configuration:\n${problems.map((p) => '  ' + p).join('\n')}`, {
      hint: `run \`${command} --help\` for the flags${command === 'berth serve' ? ' and their BERTH_* variables' : ''}`,
      exitCode: 2,
    });
  }
  return config;
}

/** `512m`, `2g`, `1024k`, `300000000` (bytes) → bytes; undefined when it is not a size. */
export function parseBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([bkmg]?)b?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * unit);
}

/** The caps on one git push, from the config (see src/push-limits.ts). */
export function pushLimitsOf(config: Config): PushLimits {
  return {
    packBytes: config.maxPackBytes,
    objectBytes: config.maxObjectBytes,
    inflatedBytes: config.maxPushInflatedBytes,
    deltaDepth: config.maxDeltaDepth,
    objects: config.maxPushObjects,
    refs: config.maxPushRefs,
  };
}

/** The SSH server's limits before authentication, from the config (see src/git/auth-limiter.ts). */
export function sshLoginLimitsOf(config: Config): { loginGraceMs: number; maxStartups: number; maxStartupsPerAddress: number } {
  return { loginGraceMs: config.sshLoginGraceTime, maxStartups: config.sshMaxStartups, maxStartupsPerAddress: config.sshMaxStartupsPerAddress };
}

/** How berth logs in to an ssh:// --docker-host: the flags' files, else ~/.ssh's; the agent of SSH_AUTH_SOCK if set. */
export function dockerSshSettings(config: Config, env: NodeJS.ProcessEnv = process.env): { keyFile?: string; knownHostsFile?: string; agentSocket?: string } {
  return { keyFile: config.dockerSshKey || undefined, knownHostsFile: config.dockerSshKnownHosts || undefined, agentSocket: env.SSH_AUTH_SOCK || undefined };
}

/** Data dir layout: every path berth writes lives under the data dir. */
export function dataPaths(dataDir: string) {
  return {
    root: dataDir,
    socket: path.join(dataDir, 'berth.sock'),
    /** The supervisor's own socket: `berth upgrade` asks it there. */
    supervisorSocket: path.join(dataDir, 'supervisor.sock'),
    lock: path.join(dataDir, 'berth.pid'),
    instance: path.join(dataDir, 'state', 'instance'),
    state: path.join(dataDir, 'state'),
    apps: path.join(dataDir, 'state', 'apps'),
    keys: path.join(dataDir, 'state', 'keys.json'),
    domains: path.join(dataDir, 'state', 'domains.json'),
    certState: path.join(dataDir, 'state', 'certs.json'),
    certs: path.join(dataDir, 'certs'),
    proxySettings: path.join(dataDir, 'state', 'proxy.json'),
    /** Images every app may build on or deploy (buildpacks:allow-stack). */
    allowedStacks: path.join(dataDir, 'state', 'allowed-stacks.json'),
    accessLog: path.join(dataDir, 'logs', 'access.log'),
    hostKeys: path.join(dataDir, 'ssh'),
    repos: path.join(dataDir, 'repos'),
    tmp: path.join(dataDir, 'tmp'),
    /** Git buildpacks fetched for builds, one folder per URL#ref. */
    buildpacks: path.join(dataDir, 'buildpacks'),
    /** Backing services' records (postgres:create ...). */
    services: path.join(dataDir, 'state', 'services.json'),
    /** Per service, DATA/services/KIND/NAME: its password (secret, 0600) and its backups, admins' only (0700). */
    serviceData: path.join(dataDir, 'services'),
    /** The Swarm's cluster registry's one credential (its password), made on first use, 0600 in a 0700 folder (docs/swarm.md). */
    registryCredential: path.join(dataDir, 'registry', 'credential'),
    /** Build and deploy output, per app: release-N.log and failed-TIME.log. */
    buildLogs: path.join(dataDir, 'logs'),
  };
}
export type DataPaths = ReturnType<typeof dataPaths>;
