// What berth install and uninstall share: the context they act through (main.ts gives the real
// one, tests their own), their flag parsing, the root check, and running systemctl.
import fs from 'node:fs';
import path from 'node:path';
import { SERVE_FLAGS } from '../config.ts';
import { UserError } from '../errors.ts';
import type { Output } from '../ui/output.ts';

/** What install and uninstall act through; main.ts gives the real ones, unit tests their own. */
export interface InstallContext {
  out: Output;
  isRoot: boolean;
  /** The running single executable, or undefined when berth runs from its sources. */
  executable: string | undefined;
  /** Whether systemd manages this machine (sd_booted(): /run/systemd/system exists). */
  systemdRunning: boolean;
  /** Runs a program with arguments (never a shell); returns its status and its output. */
  runProgram(program: string, args: readonly string[]): { code: number; output: string };
  readStdin(): Promise<Buffer>;
  cwd: string;
  /** The directory that stands for / (a test gives a temporary one). Default: / itself. */
  systemRoot?: string;
}

/**
 * Splits the words into the command's own flags and (for install) `berth serve` flags, which
 * loadConfig checks. `given` maps each serve flag's Config key to its last value.
 */
export function splitArgs(args: readonly string[], command: string, switches: readonly string[], valued: readonly string[], serveFlags: boolean) {
  const own = new Map<string, string>();
  const serveArgv: string[] = [];
  const given = new Map<string, string>();
  const problems: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = name === arg ? undefined : arg.slice(eq + 1);
    if (switches.includes(name)) {
      if (inline !== undefined) problems.push(`${name} takes no value`);
      else own.set(name, '');
      continue;
    }
    const spec = serveFlags ? SERVE_FLAGS.find((s) => s.flag === name) : undefined;
    if (valued.includes(name) || spec) {
      const value = inline ?? args[++i];
      if (value === undefined) problems.push(`${name} needs a value`);
      else if (spec) {
        serveArgv.push(name, value);
        given.set(spec.key, value);
      } else own.set(name, value);
      continue;
    }
    problems.push(arg.startsWith('-') ? `unknown flag "${arg}"` : `unexpected argument "${arg}"`);
  }
  if (problems.length) {
    throw new UserError('bad_arguments', `berth ${command}: ${problems.join('; ')}`, { hint: `run \`berth ${command} --help\``, exitCode: 2 });
  }
  return { own, serveArgv, given };
}

export function requireRoot(ctx: InstallContext, dryRun: boolean, command: string): void {
  if (ctx.isRoot || dryRun) return;
  throw new UserError('not_root', `berth ${command} writes to /usr/local/bin, /etc and /var/lib and runs systemctl, so it must run as root`, {
    hint: `run it with sudo, or add --dry-run to see what it would do`,
  });
}

export function rootOf(dir: string | undefined, cwd: string): string {
  if (dir === undefined) return '';
  const root = path.resolve(cwd, dir);
  if (!fs.statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UserError('bad_arguments', `--root: ${dir} is not a directory`, { hint: 'create it first, or give another', exitCode: 2 });
  }
  return root;
}

export function runOrThrow(ctx: InstallContext, command: readonly string[]): void {
  ctx.out.step(`Running ${command.join(' ')}`);
  const result = ctx.runProgram(command[0]!, command.slice(1));
  if (result.code !== 0) {
    throw new UserError('systemctl_failed', `\`${command.join(' ')}\` exited with ${result.code}${result.output.trim() ? `:\n${result.output.trim()}` : ''}`, {
      hint: 'see `systemctl status berth` and `journalctl -u berth`; run berth install again once fixed',
    });
  }
}

export function livePid(lockFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(lockFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

export function modeText(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}
