// berth serve's configuration: one typed object, every field's default documented where it is
// declared, each flag mirrored by a BERTH_* environment variable; validation reports every
// problem at once.
import path from 'node:path';
import { UserError } from './errors.ts';

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
  /** Docker engine: a unix socket path or tcp://host:port. Default: DOCKER_HOST, else /var/run/docker.sock. */
  dockerHost: string;
  /** Docker bridge network that app containers join. Default: berth. */
  network: string;
}

interface FlagSpec {
  key: keyof Config;
  flag: string;
  env: string;
  kind: 'string' | 'port';
  describe: string;
}

export const SERVE_FLAGS: readonly FlagSpec[] = [
  { key: 'dataDir', flag: '--data-dir', env: 'BERTH_DATA_DIR', kind: 'string', describe: 'directory holding all state (default /var/lib/berth as root, ./.berth otherwise)' },
  { key: 'httpPort', flag: '--http-port', env: 'BERTH_HTTP_PORT', kind: 'port', describe: 'HTTP listener port (default 80 as root, 8080 otherwise)' },
  { key: 'httpsPort', flag: '--https-port', env: 'BERTH_HTTPS_PORT', kind: 'port', describe: 'HTTPS listener port (default 443 as root, 8443 otherwise)' },
  { key: 'sshPort', flag: '--ssh-port', env: 'BERTH_SSH_PORT', kind: 'port', describe: 'SSH port for git push and commands (default 2222)' },
  { key: 'bindHost', flag: '--bind', env: 'BERTH_BIND', kind: 'string', describe: 'address the listeners bind to (default 0.0.0.0)' },
  { key: 'domain', flag: '--domain', env: 'BERTH_DOMAIN', kind: 'string', describe: 'apps are served at APP.DOMAIN (default localhost)' },
  { key: 'dockerHost', flag: '--docker-host', env: 'BERTH_DOCKER_HOST', kind: 'string', describe: 'Docker engine socket or tcp://host:port (default $DOCKER_HOST or /var/run/docker.sock)' },
  { key: 'network', flag: '--network', env: 'BERTH_NETWORK', kind: 'string', describe: 'Docker network app containers join (default berth)' },
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
    network: 'berth',
  };
}

/**
 * Builds the config from defaults, then BERTH_* variables, then flags (flags win). Unknown
 * flags and bad values are all reported in one UserError.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const config = defaultConfig(env);
  const problems: string[] = [];
  const set = (spec: FlagSpec, raw: string, from: string) => {
    if (spec.kind === 'port') {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < 0 || n > 65535) problems.push(`${from}: "${raw}" is not a port number (0-65535)`);
      else (config[spec.key] as number) = n;
    } else if (raw === '') problems.push(`${from}: empty value`);
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
  }
  config.dataDir = path.resolve(config.dataDir);
  config.domain = config.domain.toLowerCase().replace(/\.$/, '');
  if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(config.domain)) {
    problems.push(`--domain: "${config.domain}" is not a valid DNS name`);
  }
  if (!/^[a-z][a-z0-9_.-]{0,62}$/i.test(config.network)) problems.push(`--network: "${config.network}" is not a valid Docker network name`);
  if (problems.length) {
    throw new UserError('invalid_config', `berth serve: ${problems.length === 1 ? 'a problem' : `${problems.length} problems`} with the configuration:\n${problems.map((p) => '  ' + p).join('\n')}`, {
      hint: 'run `berth serve --help` for the flags and their BERTH_* variables',
      exitCode: 2,
    });
  }
  return config;
}

/** Data dir layout: every path berth writes lives under the data dir. */
export function dataPaths(dataDir: string) {
  return {
    root: dataDir,
    socket: path.join(dataDir, 'berth.sock'),
    lock: path.join(dataDir, 'berth.pid'),
    instance: path.join(dataDir, 'state', 'instance'),
    state: path.join(dataDir, 'state'),
    apps: path.join(dataDir, 'state', 'apps'),
    keys: path.join(dataDir, 'state', 'keys.json'),
    proxySettings: path.join(dataDir, 'state', 'proxy.json'),
    accessLog: path.join(dataDir, 'logs', 'access.log'),
    hostKeys: path.join(dataDir, 'ssh'),
    repos: path.join(dataDir, 'repos'),
    tmp: path.join(dataDir, 'tmp'),
  };
}
export type DataPaths = ReturnType<typeof dataPaths>;
