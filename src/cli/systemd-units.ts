// What `berth install` writes, as text: the systemd service of the supervisor, one socket unit
// per listener (HTTP, HTTPS, SSH) handed to it by socket activation, and the environment file of
// its flags. Pure: paths, modes and contents, decided here and nowhere else.

/** Where berth lives once installed (the defaults; `--root` only prefixes them). */
export const INSTALL_PATHS = {
  binary: '/usr/local/bin/berth',
  unitDir: '/etc/systemd/system',
  configDir: '/etc/berth',
  envFile: '/etc/berth/berth.env',
  dataDir: '/var/lib/berth',
} as const;

export const SERVICE_UNIT = 'berth.service';

/**
 * The three sockets, named as the supervisor looks them up in LISTEN_FDNAMES
 * (src/daemon/listen-sockets.ts): FileDescriptorName= is that contract.
 */
export const SOCKET_UNITS = [
  { unit: 'berth-http.socket', fdName: 'http', what: 'HTTP', portKey: 'httpPort' },
  { unit: 'berth-https.socket', fdName: 'https', what: 'HTTPS', portKey: 'httpsPort' },
  { unit: 'berth-ssh.socket', fdName: 'ssh', what: 'SSH', portKey: 'sshPort' },
] as const;

/** Every unit, sockets first: the order `systemctl enable --now` gets them in. */
export const ALL_UNITS: readonly string[] = [...SOCKET_UNITS.map((s) => s.unit), SERVICE_UNIT];

export interface ListenSettings {
  httpPort: number;
  httpsPort: number;
  sshPort: number;
  /** The address to bind, or undefined for every address (IPv4 and IPv6). */
  bindHost: string | undefined;
}

/** One file as install writes it: the path on the installed system, its mode and its content. */
export interface InstalledFile {
  path: string;
  mode: number;
  content: string;
}

/**
 * The units and the environment file. `env` is the BERTH_* variables in the order they are
 * written; `binary` the path ExecStart runs.
 */
export function renderInstallFiles(listen: ListenSettings, env: ReadonlyArray<readonly [string, string]>, binary: string = INSTALL_PATHS.binary): InstalledFile[] {
  return [
    { path: INSTALL_PATHS.envFile, mode: 0o600, content: renderEnvFile(env) },
    ...SOCKET_UNITS.map((s) => ({ path: `${INSTALL_PATHS.unitDir}/${s.unit}`, mode: 0o644, content: renderSocketUnit(s, listenAddress(listen.bindHost, listen[s.portKey])) })),
    { path: `${INSTALL_PATHS.unitDir}/${SERVICE_UNIT}`, mode: 0o644, content: renderServiceUnit(binary) },
  ];
}

export function renderServiceUnit(binary: string = INSTALL_PATHS.binary): string {
  const sockets = SOCKET_UNITS.map((s) => s.unit).join(' ');
  return [
    '# Written by `berth install`. The supervisor of berth (its proxy and control plane are its',
    '# children); systemd holds the sockets, so a restart of this service queues connections.',
    '[Unit]',
    'Description=berth, git push to deploy (supervisor)',
    `Requires=${sockets}`,
    `After=${sockets} network-online.target docker.service`,
    'Wants=network-online.target docker.service',
    '',
    '[Service]',
    'Type=exec',
    `EnvironmentFile=${INSTALL_PATHS.envFile}`,
    `ExecStart=${binary} serve`,
    // `berth upgrade` replaces the proxy and the control plane by the binary now at that path.
    `ExecReload=${binary} upgrade`,
    `Sockets=${sockets}`,
    // SIGTERM to the supervisor alone: it stops its children itself, letting them drain.
    'KillMode=mixed',
    // An upgrade (reload) may wait for the old control plane's pushes (up to 10 minutes).
    'TimeoutStartSec=15min',
    'TimeoutStopSec=60s',
    'Restart=on-failure',
    'RestartSec=1s',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    `Also=${sockets}`,
    '',
  ].join('\n');
}

export function renderSocketUnit(socket: (typeof SOCKET_UNITS)[number], listen: string): string {
  return [
    '# Written by `berth install`. Held by systemd and handed to berth.service, so connections',
    '# wait in the backlog while berth restarts instead of being refused.',
    '[Unit]',
    `Description=berth ${socket.what} socket`,
    '',
    '[Socket]',
    `ListenStream=${listen}`,
    `FileDescriptorName=${socket.fdName}`,
    `Service=${SERVICE_UNIT}`,
    'NoDelay=true',
    '',
    '[Install]',
    'WantedBy=sockets.target',
    '',
  ].join('\n');
}

/** KEY=VALUE lines that systemd's EnvironmentFile= and a POSIX shell's `.` read alike. */
export function renderEnvFile(env: ReadonlyArray<readonly [string, string]>): string {
  return [
    "# berth serve's flags as BERTH_* variables (`berth serve --help` lists them all). Written by",
    '# `berth install`: edit, then `systemctl restart berth`. The ports are those of the',
    '# berth-*.socket units under systemd; the three here matter when berth is started by hand.',
    ...env.map(([key, value]) => `${key}=${envValue(key, value)}`),
    '',
  ].join('\n');
}

/**
 * A value as both readers take it literally: bare when it has only safe characters, otherwise in
 * single quotes (no escapes in either reader). Throws on what neither can hold literally.
 */
export function envValue(key: string, value: string): string {
  if (/^[A-Za-z0-9@%+=:,./_#~-]*$/.test(value) && !value.startsWith('#')) return value;
  if (/['\n\r\\]/.test(value)) throw new RangeError(`${key}: a value with a quote, a backslash or a line break cannot go into the environment file`);
  return `'${value}'`;
}

/** Reads back an environment file this module wrote (for uninstall: where the data is). */
export function parseEnvFile(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    const raw = m[2]!;
    env.set(m[1]!, raw.length >= 2 && raw.startsWith("'") && raw.endsWith("'") ? raw.slice(1, -1) : raw);
  }
  return env;
}

/** ListenStream= for a port: every address (IPv6 and IPv4) unless one is given. */
export function listenAddress(bindHost: string | undefined, port: number): string {
  if (bindHost === undefined) return String(port);
  return bindHost.includes(':') ? `[${bindHost}]:${port}` : `${bindHost}:${port}`;
}

/** The shell command that starts berth in the foreground with the installed flags, where systemd does not run. */
export function byHandCommand(binary: string = INSTALL_PATHS.binary): string {
  return `sh -c 'set -a && . ${INSTALL_PATHS.envFile} && set +a && exec ${binary} serve'`;
}
