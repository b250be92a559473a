// `berth install`: berth as a systemd service on this machine. Copies the running binary to
// /usr/local/bin, writes the units and the environment file (systemd-units.ts), the data dir and
// optionally an admin key, then enables and starts the units (uninstall.ts undoes it). Every
// input is checked before anything changes; --dry-run prints the whole plan and changes nothing.
import fs from 'node:fs';
import path from 'node:path';
import { isIP } from 'node:net';
import { dataPaths, loadConfig, SERVE_FLAGS } from '../config.ts';
import { UserError } from '../errors.ts';
import { fingerprintOf, KeyStore, parsePublicKey } from '../git/key-store.ts';
import { AppStore } from '../state/app-store.ts';
import type { Output } from '../ui/output.ts';
import { livePid, modeText, requireRoot, rootOf, runOrThrow, splitArgs, type InstallContext } from './install-context.ts';
import { ALL_UNITS, byHandCommand, INSTALL_PATHS, renderInstallFiles, SOCKET_UNITS, type InstalledFile } from './systemd-units.ts';

export type { InstallContext } from './install-context.ts';

/** The admin key's name in keys.json. */
export const ADMIN_KEY_NAME = 'admin';

export const INSTALL_HELP = [
  'Usage: berth install --domain DOMAIN [--acme-email EMAIL] [--admin-key FILE|-] [SERVE FLAGS...] [--dry-run] [--root DIR]',
  '',
  'Installs berth as a systemd service on this machine (as root): copies this binary to',
  `${INSTALL_PATHS.binary}, writes ${INSTALL_PATHS.unitDir}/berth.service and the sockets`,
  `${SOCKET_UNITS.map((s) => s.unit).join(', ')} (systemd holds them, so a restart queues`,
  `connections), ${INSTALL_PATHS.envFile} with the flags, the data dir ${INSTALL_PATHS.dataDir} (0700),`,
  'then runs `systemctl daemon-reload` and `systemctl enable --now` on the units and prints the',
  'steps to the first git push. Where systemd does not run, it writes the files and prints the',
  'command that starts berth by hand.',
  '',
  '  --domain DOMAIN      apps are served at APP.DOMAIN (required); point *.DOMAIN at this server',
  '  --acme-email EMAIL   turns on automatic HTTPS (Let\'s Encrypt) with this contact address',
  '  --admin-key FILE|-   adds this SSH public key (- reads it from standard input) as the admin key',
  '  --dry-run            prints every file (path, mode, content) and command, and changes nothing',
  '  --root DIR           writes under DIR instead of / (the files still name the final paths) and',
  '                       runs no systemctl: for preparing an image',
  '  Any `berth serve` flag (--ssh-port, --http-port, --https-port, --bind, --acme-directory, ...)',
  '  goes into the environment file as its BERTH_* variable; the ports and --bind also go into',
  '  the socket units. Defaults: ports 80, 443 and 2222 on every address.',
  '',
  'Usage: berth uninstall [--purge] [--dry-run] [--root DIR]',
  '',
  'Stops and disables the units, removes them and the binary. The data dir and /etc/berth stay',
  '(apps, keys, certificates) unless --purge.',
].join('\n');
export async function runInstall(args: readonly string[], ctx: InstallContext): Promise<number> {
  const plan = await planInstall(args, ctx);
  const { out } = ctx;
  if (plan.dryRun) {
    await printInstallPlan(plan, out);
    return 0;
  }
  const at = (p: string) => path.join(plan.root, p);
  for (const dir of plan.dirs) {
    fs.mkdirSync(path.dirname(at(dir.path)), { recursive: true, mode: 0o755 });
    fs.mkdirSync(at(dir.path), { recursive: true, mode: dir.mode });
    fs.chmodSync(at(dir.path), dir.mode);
  }
  if (plan.binary.same) out.step(`${plan.binary.to} is this binary already`);
  else {
    copyAtomically(plan.binary.from, at(plan.binary.to), 0o755);
    out.step(`Copied ${plan.binary.from} to ${plan.binary.to}`);
  }
  for (const file of plan.files) {
    fs.mkdirSync(path.dirname(at(file.path)), { recursive: true, mode: 0o755 });
    writeAtomically(at(file.path), file.content, file.mode);
    out.step(`Wrote ${file.path} (${modeText(file.mode)})`);
  }
  if (plan.adminKey) {
    if (plan.adminKey.already) out.step(`The admin key (${plan.adminKey.fingerprint}) is already added as "${plan.adminKey.already}"`);
    else {
      // With the apps' ids: a keys.json from before scopes held ids is migrated as the daemon would.
      const apps = new AppStore(at(plan.adminKey.appsFile));
      await apps.load();
      const store = new KeyStore(at(plan.adminKey.keysFile));
      await store.load({ appIdOf: (name) => apps.get(name)?.id });
      await store.add(ADMIN_KEY_NAME, plan.adminKey.text);
      out.step(`Added the admin key "${ADMIN_KEY_NAME}" (${plan.adminKey.fingerprint})`);
    }
  }
  if (plan.systemd === 'running') {
    for (const command of plan.commands) runOrThrow(ctx, command);
    out.step('berth is enabled and started: `systemctl status berth`, `journalctl -u berth -f`, `berth status`');
    if (plan.reinstall) {
      out.detail('berth was installed before: if it was running, it keeps its flags and binary until `systemctl restart berth`');
      out.detail('(or `berth upgrade`, which takes the new binary and refuses no request, but not new flags)');
    }
  } else printNotStarted(plan, out);
  printNextSteps(plan, out);
  return 0;
}

interface InstallPlan {
  dryRun: boolean;
  /** '' for the system itself, or --root's directory. */
  root: string;
  dirs: Array<{ path: string; mode: number }>;
  binary: { from: string; to: string; same: boolean };
  files: InstalledFile[];
  adminKey: { text: string; fingerprint: string; keysFile: string; appsFile: string; already: string | undefined } | undefined;
  /** berth was installed here before (its environment file exists): a running one keeps its flags. */
  reinstall: boolean;
  /** Run in order when systemd manages this machine (and no --root). */
  commands: string[][];
  systemd: 'running' | 'not-running' | 'root';
  domain: string;
  sshPort: number;
  httpPort: number;
  acme: boolean;
  dataDir: string;
}

const INSTALL_SWITCHES = ['--dry-run'];
const INSTALL_VALUES = ['--root', '--admin-key'];

async function planInstall(args: readonly string[], ctx: InstallContext): Promise<InstallPlan> {
  const { own, serveArgv, given } = splitArgs(args, 'install', INSTALL_SWITCHES, INSTALL_VALUES, true);
  const dryRun = own.has('--dry-run');
  requireRoot(ctx, dryRun, 'install');
  const root = rootOf(own.get('--root'), ctx.cwd) || (ctx.systemRoot ?? '');
  const config = loadConfig(serveArgv, {}, 'berth install');
  if (!given.has('domain')) {
    throw new UserError('missing_domain', 'berth install needs --domain: apps are served at APP.DOMAIN', {
      hint: 'e.g. berth install --domain apps.example.com --acme-email you@example.com (and point *.apps.example.com at this server)',
      exitCode: 2,
    });
  }
  const problems: string[] = [];
  for (const [key, flag] of [['httpPort', '--http-port'], ['httpsPort', '--https-port'], ['sshPort', '--ssh-port']] as const) {
    if (given.has(key) && config[key] === 0) problems.push(`${flag} 0: a systemd socket needs a fixed port`);
  }
  if (given.has('bindHost') && isIP(config.bindHost) === 0) problems.push(`--bind "${config.bindHost}": a systemd socket listens on an IP address, not a name`);
  if (problems.length) throw new UserError('bad_arguments', `berth install: ${problems.join('; ')}`, { hint: 'run `berth install --help`', exitCode: 2 });
  if (!ctx.executable) {
    throw new UserError('no_binary', 'berth install copies the single executable that runs it, and this berth runs from its sources', {
      hint: 'build it (`npm run build`) and run dist/berth install',
    });
  }

  const listen = {
    httpPort: given.has('httpPort') ? config.httpPort : 80,
    httpsPort: given.has('httpsPort') ? config.httpsPort : 443,
    sshPort: given.has('sshPort') ? config.sshPort : 2222,
    bindHost: given.has('bindHost') ? config.bindHost : undefined,
  };
  const dataDir = given.has('dataDir') ? config.dataDir : INSTALL_PATHS.dataDir;
  // The flags as given (sizes stay `2g`), except the two loadConfig normalises; the data dir and
  // ports always, so that starting berth by hand from this file binds what the sockets do.
  const values = new Map<string, string>(given);
  values.set('dataDir', dataDir);
  values.set('domain', config.domain);
  values.set('httpPort', String(listen.httpPort));
  values.set('httpsPort', String(listen.httpsPort));
  values.set('sshPort', String(listen.sshPort));
  const env: Array<[string, string]> = [];
  for (const spec of SERVE_FLAGS) {
    const value = values.get(spec.key);
    if (value !== undefined) env.push([spec.env, value]);
  }
  let files: InstalledFile[];
  try {
    files = renderInstallFiles(listen, env);
  } catch (e) {
    throw new UserError('bad_arguments', `berth install: ${(e as Error).message}`, { exitCode: 2 });
  }

  const adminKey = await planAdminKey(own.get('--admin-key'), root, dataDir, ctx);
  const to = INSTALL_PATHS.binary;
  return {
    dryRun,
    root,
    dirs: [
      { path: INSTALL_PATHS.configDir, mode: 0o755 },
      { path: dataDir, mode: 0o700 },
    ],
    binary: { from: ctx.executable, to, same: sameFile(ctx.executable, path.join(root, to)) },
    files,
    adminKey,
    reinstall: fs.existsSync(path.join(root, INSTALL_PATHS.envFile)),
    commands: [
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'enable', '--now', ...ALL_UNITS],
    ],
    systemd: own.has('--root') ? 'root' : ctx.systemdRunning ? 'running' : 'not-running',
    domain: config.domain,
    sshPort: listen.sshPort,
    httpPort: listen.httpPort,
    acme: config.acmeEmail !== '',
    dataDir,
  };
}

async function planAdminKey(source: string | undefined, root: string, dataDir: string, ctx: InstallContext): Promise<InstallPlan['adminKey']> {
  if (source === undefined) return undefined;
  let text: string;
  if (source === '-') text = (await ctx.readStdin()).toString('utf8');
  else {
    try {
      text = fs.readFileSync(path.resolve(ctx.cwd, source), 'utf8');
    } catch (e) {
      throw new UserError('key_file_unreadable', `--admin-key: cannot read ${source}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
        hint: 'give the public key file, such as ~/.ssh/id_ed25519.pub, or - to read it from standard input',
        exitCode: 2,
      });
    }
  }
  const fingerprint = fingerprintOf(parsePublicKey(text).key);
  const keysFile = dataPaths(dataDir).keys;
  // A reinstall finds the keys of the data dir it keeps: the same key is fine, another "admin" is not.
  const store = new KeyStore(path.join(root, keysFile));
  if (fs.existsSync(path.join(root, keysFile))) await store.load({ readOnly: true });
  const same = store.list().find((k) => k.fingerprint === fingerprint);
  // The running daemon owns keys.json: a key written behind its back would be lost at its next write.
  const pid = same ? undefined : livePid(path.join(root, dataPaths(dataDir).lock));
  if (pid !== undefined) {
    throw new UserError('berth_running', `--admin-key: berth serve (pid ${pid}) is running on ${dataDir}, so it adds the key itself`, {
      hint: `leave out --admin-key, and add the key with: berth ssh-keys:add ${ADMIN_KEY_NAME} ${source}`,
      exitCode: 2,
    });
  }
  if (!same && store.list().some((k) => k.name === ADMIN_KEY_NAME)) {
    throw new UserError('key_exists', `--admin-key: ${dataDir} already has another key named "${ADMIN_KEY_NAME}"`, {
      hint: `leave out --admin-key, and add this key under another name: berth ssh-keys:add NAME ${source}`,
      exitCode: 2,
    });
  }
  return { text, fingerprint, keysFile, appsFile: dataPaths(dataDir).apps, already: same?.name };
}

function sameFile(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}

// A running executable cannot be overwritten in place (ETXTBSY), and a half-written unit must not
// be read: write beside the target, then rename over it.
function copyAtomically(from: string, to: string, mode: number): void {
  const temp = `${to}.berth-install-${process.pid}`;
  try {
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
    fs.copyFileSync(from, temp);
    fs.chmodSync(temp, mode);
    fs.renameSync(temp, to);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

function writeAtomically(file: string, content: string, mode: number): void {
  const temp = `${file}.berth-install-${process.pid}`;
  try {
    const fd = fs.openSync(temp, 'w', mode);
    try {
      fs.writeFileSync(fd, content);
      fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// What the user reads.

async function printInstallPlan(plan: InstallPlan, out: Output): Promise<void> {
  out.step(`berth install --dry-run: nothing is changed${plan.systemd === 'root' ? `; the files would go under ${plan.root}` : ''}`);
  out.section('directories');
  for (const dir of plan.dirs) out.detail(`${dir.path} (${modeText(dir.mode)})`);
  out.section(`file ${plan.binary.to} (0755)`);
  out.detail(plan.binary.same ? 'this binary, already there' : `a copy of ${plan.binary.from} (${(fs.statSync(plan.binary.from).size / 1024 / 1024).toFixed(1)} MB)`);
  for (const file of plan.files) {
    out.section(`file ${file.path} (${modeText(file.mode)})`);
    out.detail(file.content);
  }
  if (plan.adminKey) {
    out.section(`admin key`);
    out.detail(
      plan.adminKey.already
        ? `${plan.adminKey.fingerprint}: already in ${plan.adminKey.keysFile} as "${plan.adminKey.already}"`
        : `${plan.adminKey.fingerprint}: added to ${plan.adminKey.keysFile} as "${ADMIN_KEY_NAME}"`,
    );
  }
  out.section(plan.systemd === 'running' ? 'commands' : 'commands (not run: see below)');
  for (const command of plan.commands) out.detail(command.join(' '));
  if (plan.systemd !== 'running') printNotStarted(plan, out);
  printNextSteps(plan, out);
}

function printNotStarted(plan: Pick<InstallPlan, 'systemd' | 'commands' | 'root' | 'dryRun'>, out: Output): void {
  const commands = plan.commands.map((c) => c.join(' ')).join(' && ');
  if (plan.systemd === 'root') {
    out.step(`Installed under ${plan.root}, so no systemctl ${plan.dryRun ? 'would run' : 'was run'}; on the system that runs from it:`);
    out.detail(commands);
    return;
  }
  out.step(`systemd is not running on this machine (there is no /run/systemd/system): berth ${plan.dryRun ? 'would be' : 'is'} installed but not enabled or started`);
  out.step('Start berth by hand (it runs in the foreground and prints where it serves):');
  out.detail(byHandCommand());
  out.detail(`or, once systemd runs this machine: ${commands}`);
}

function printNextSteps(plan: InstallPlan, out: Output): void {
  const host = `berth.${plan.domain}`;
  const web = plan.acme ? `https://myapp.${plan.domain}/` : `http://myapp.${plan.domain}${plan.httpPort === 80 ? '' : `:${plan.httpPort}`}/`;
  out.section('first push');
  const steps = [
    `1. DNS: point *.${plan.domain} at this server (A and AAAA records).`,
    plan.adminKey
      ? '2. The key of --admin-key pushes and runs every command; add others with `berth ssh-keys:add NAME KEYFILE [--apps APP,...]`.'
      : `2. On this server, add your public key: berth ssh-keys:add ${ADMIN_KEY_NAME} ~/.ssh/id_ed25519.pub (or - < key.pub)`,
    '3. In your app\'s repository (a Dockerfile, or code Heroku buildpacks detect):',
    `     git remote add berth ssh://berth@${host}:${plan.sshPort}/myapp`,
    '4. Push (the first push of a name creates the app):',
    '     git push berth main',
    `5. Open ${web}${plan.acme ? '' : ' (HTTP only: add BERTH_ACME_EMAIL to the environment file for automatic HTTPS)'}`,
  ];
  out.detail(steps.join('\n'));
}
