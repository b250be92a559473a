// `berth uninstall [--purge] [--dry-run] [--root DIR]`: stops and disables berth's units, removes
// them and the binary, and keeps the data dir and /etc/berth unless --purge.
import fs from 'node:fs';
import path from 'node:path';
import { dataPaths } from '../config.ts';
import { UserError } from '../errors.ts';
import type { Output } from '../ui/output.ts';
import { livePid, requireRoot, rootOf, runOrThrow, splitArgs, type InstallContext } from './install-context.ts';
import { ALL_UNITS, INSTALL_PATHS, parseEnvFile } from './systemd-units.ts';

export async function runUninstall(args: readonly string[], ctx: InstallContext): Promise<number> {
  const plan = planUninstall(args, ctx);
  const { out } = ctx;
  if (plan.dryRun) {
    printUninstallPlan(plan, out);
    return 0;
  }
  const at = (p: string) => path.join(plan.root, p);
  if (plan.systemd === 'running') for (const command of plan.before) runOrThrow(ctx, command);
  for (const file of plan.remove) {
    fs.rmSync(at(file), { force: true });
    out.step(`Removed ${file}`);
  }
  if (plan.systemd === 'running') for (const command of plan.after) runOrThrow(ctx, command);
  for (const dir of plan.purge) {
    fs.rmSync(at(dir), { recursive: true, force: true });
    out.step(`Removed ${dir} and everything in it`);
  }
  printKept(plan, out);
  return 0;
}

interface UninstallPlan {
  dryRun: boolean;
  root: string;
  systemd: 'running' | 'not-running' | 'root';
  before: string[][];
  remove: string[];
  after: string[][];
  purge: string[];
  kept: string[];
  instance: string | undefined;
}

function planUninstall(args: readonly string[], ctx: InstallContext): UninstallPlan {
  const { own } = splitArgs(args, 'uninstall', ['--dry-run', '--purge'], ['--root'], false);
  const dryRun = own.has('--dry-run');
  requireRoot(ctx, dryRun, 'uninstall');
  const root = rootOf(own.get('--root'), ctx.cwd) || (ctx.systemRoot ?? '');
  const at = (p: string) => path.join(root, p);
  const envFile = at(INSTALL_PATHS.envFile);
  const dataDir = (fs.existsSync(envFile) ? parseEnvFile(fs.readFileSync(envFile, 'utf8')).get('BERTH_DATA_DIR') : undefined) ?? INSTALL_PATHS.dataDir;
  const units = ALL_UNITS.map((u) => `${INSTALL_PATHS.unitDir}/${u}`).filter((u) => fs.existsSync(at(u)));
  const systemd = own.has('--root') ? 'root' : ctx.systemdRunning ? 'running' : 'not-running';
  if (systemd !== 'running') {
    // Without systemd, a berth started by hand may be running on the data dir: stopping it is the operator's call.
    const pid = livePid(dataPaths(at(dataDir)).lock);
    if (pid !== undefined) {
      throw new UserError('berth_running', `berth serve (pid ${pid}) is running on ${dataDir}, and systemd does not manage it`, {
        hint: `stop it (kill ${pid}), then run berth uninstall again`,
      });
    }
  }
  const remove = [...units, ...[INSTALL_PATHS.binary].filter((p) => fs.existsSync(at(p)))];
  const purgeAsked = own.has('--purge');
  const candidates = [dataDir, INSTALL_PATHS.configDir].filter((p) => fs.existsSync(at(p)));
  // The data dir comes from an editable file: --purge deletes only what is berth's.
  if (purgeAsked && candidates.includes(dataDir) && !looksLikeDataDir(at(dataDir))) {
    throw new UserError('not_a_data_dir', `--purge: ${dataDir} (BERTH_DATA_DIR in ${INSTALL_PATHS.envFile}) does not look like berth's data dir, so it is not removed`, {
      hint: `check it, remove what is berth's yourself, then run berth uninstall without --purge`,
    });
  }
  const instanceFile = at(dataPaths(dataDir).instance);
  return {
    dryRun,
    root,
    systemd,
    before: units.length ? [['systemctl', 'disable', '--now', ...units.map((u) => path.basename(u))]] : [],
    remove,
    after: units.length ? [['systemctl', 'daemon-reload']] : [],
    purge: purgeAsked ? candidates : [],
    kept: purgeAsked ? [] : candidates,
    instance: fs.existsSync(instanceFile) ? fs.readFileSync(instanceFile, 'utf8').trim() : undefined,
  };
}

/** Empty (installed, never started), or holding berth's state folder; never / itself. */
function looksLikeDataDir(dir: string): boolean {
  if (path.resolve(dir) === '/') return false;
  const entries = fs.readdirSync(dir);
  return entries.length === 0 || (entries.includes('state') && fs.statSync(path.join(dir, 'state')).isDirectory());
}

function printUninstallPlan(plan: UninstallPlan, out: Output): void {
  out.step(`berth uninstall --dry-run: nothing is changed${plan.systemd === 'root' ? `; the files are under ${plan.root}` : ''}`);
  if (plan.systemd === 'running') {
    out.section('commands');
    for (const command of [...plan.before, ...plan.after]) out.detail(command.join(' '));
  }
  out.section('removed');
  out.detail(plan.remove.length ? plan.remove.join('\n') : '(nothing: berth is not installed)');
  if (plan.purge.length) out.detail(plan.purge.map((d) => `${d} and everything in it`).join('\n'));
  printKept(plan, out);
}

function printKept(plan: UninstallPlan, out: Output): void {
  if (plan.kept.length) out.step(`Kept ${plan.kept.join(' and ')} (apps, keys, certificates, flags): berth uninstall --purge removes them`);
  if (plan.instance) {
    out.detail(`The apps' containers are not touched; to remove them: docker rm -f $(docker ps -aq --filter label=berth.instance=${plan.instance})`);
  }
}
