// Every admin command in one registry, run the same way for the local CLI and for SSH: help,
// unknown commands, key scopes and error rendering are decided here, once.
import { describeForUser, UserError } from '../errors.ts';
import { log } from '../log.ts';
import { VERSION } from '../version.ts';
import { argumentValues, checkArguments, parseWords, usageOf } from './args.ts';
import { defineCommand, isScoped, requireAdmin, requireDaemon, type Command, type CommandContext } from './command.ts';
import { scopeNames, scopeAllows } from '../git/key-store.ts';
import { appCommands } from './commands/apps.ts';
import { certCommands } from './commands/certs.ts';
import { domainCommands } from './commands/domains.ts';
import { proxyCommands } from './commands/proxy.ts';
import { sshKeyCommands } from './commands/ssh-keys.ts';
import { configCommands } from './commands/config.ts';
import { psCommands } from './commands/ps.ts';
import { releaseCommands } from './commands/releases.ts';
import { buildpackCommands } from './commands/buildpacks.ts';
import { logCommands } from './commands/logs.ts';
import { runCommands } from './commands/run.ts';
import { storageCommands } from './commands/storage.ts';
import { resourceCommands } from './commands/resource.ts';
import { gitFromImageCommands } from './commands/git-from-image.ts';
import { checksCommands } from './commands/checks.ts';
import { daemonCommands } from './commands/daemon.ts';
import { dashboardCommands } from './commands/dashboard.ts';
import { serviceCommands } from './commands/services.ts';
import { nodeCommands } from './commands/nodes.ts';

// These two declare no `args`: they take whatever words come, as they always have.
const versionCommand = defineCommand({
  name: 'version',
  summary: "print berth's version",
  scope: 'any',
  async run(ctx) {
    ctx.out.line(`berth ${VERSION} (node ${process.version})`);
  },
});

const helpCommand = defineCommand({
  name: 'help',
  usage: '[COMMAND]',
  summary: 'list the commands, or explain one',
  scope: 'any',
  async run(ctx, { words }) {
    const name = words.find((w) => !w.startsWith('-'));
    if (name) {
      ctx.out.line(commandHelp(findCommand(name)));
      return;
    }
    ctx.out.line(overview(ctx.caller.kind === 'ssh' ? 'ssh' : 'local'));
  },
});

export const COMMANDS: readonly Command[] = [
  helpCommand,
  versionCommand,
  ...appCommands,
  ...sshKeyCommands,
  ...configCommands,
  ...psCommands,
  ...releaseCommands,
  ...buildpackCommands,
  ...logCommands,
  ...runCommands,
  ...storageCommands,
  ...resourceCommands,
  ...gitFromImageCommands,
  ...domainCommands,
  ...certCommands,
  ...proxyCommands,
  ...checksCommands,
  ...daemonCommands,
  ...dashboardCommands,
  ...serviceCommands,
  ...nodeCommands,
];

/** Runs one command line (already split into words) and returns its exit status. Never throws. */
export async function runCommand(words: readonly string[], ctx: CommandContext): Promise<number> {
  const [name, ...rest] = words;
  try {
    if (name === undefined || name === '--help' || name === '-h') {
      ctx.out.line(overview(ctx.caller.kind === 'ssh' ? 'ssh' : 'local'));
      return 0;
    }
    const command = findCommand(name === '--version' ? 'version' : name);
    if (command.passThrough ? rest[0] === '--help' || rest[0] === '-h' : rest.includes('--help') || rest.includes('-h')) {
      ctx.out.line(commandHelp(command));
      return 0;
    }
    const code = await invoke(command, rest, ctx);
    return typeof code === 'number' ? code : 0;
  } catch (e) {
    const { lines, exitCode } = describeForUser(e, `command ${name ?? ''}`);
    for (const line of lines) ctx.out.error(line);
    return exitCode;
  }
}

/**
 * Runs one command on its words (after its name): parses them against its declaration, checks
 * the caller's scope against the APP, then the arguments, then the APP's name, and calls `run`.
 */
export async function invoke(command: Command, words: readonly string[], ctx: CommandContext): Promise<number | void> {
  const parsed = parseWords(command, words);
  const takesApp = command.args?.[0] === 'APP';
  authorize(command, takesApp ? parsed.positional[0] : undefined, ctx);
  const app = checkArguments(command, parsed);
  const values = argumentValues(command, parsed.positional);
  return command.run(ctx, {
    args: takesApp ? values.slice(1) : values,
    flags: parsed.flags,
    otherFlags: parsed.otherFlags,
    words,
    ...(takesApp ? { app } : {}),
    ...(command.needsDaemon ? { daemon: () => requireDaemon(ctx) } : {}),
  });
}

export function findCommand(name: string): Command {
  const command = COMMANDS.find((c) => c.name === name);
  if (command) return command;
  const near = COMMANDS.filter((c) => c.name.split(':')[0] === name.split(':')[0] || distance(c.name, name) <= 2).map((c) => c.name);
  throw new UserError('unknown_command', `unknown command "${name}"`, {
    hint: near.length ? `did you mean: ${near.join(', ')}? (\`help\` lists all commands)` : 'run `help` for the list of commands',
    exitCode: 2,
  });
}

// A key scoped to apps may run app commands on those apps (by id) only, and no admin command.
function authorize(command: Command, app: string | undefined, ctx: CommandContext): void {
  if (!isScoped(ctx) || ctx.caller.kind !== 'ssh' || command.scope === 'any') return;
  const key = ctx.caller.key;
  if (command.scope === 'admin') requireAdmin(ctx, `run ${command.name}`, command.name);
  if (app === undefined || !scopeAllows(key, app, ctx.state.apps.get(app))) {
    log.warn('command_refused', { key: key.name, command: command.name, app, reason: 'app_scope' });
    const scope = scopeNames(key.apps!, (id) => ctx.state.apps.byId(id)?.name).join(', ');
    throw new UserError('forbidden', `key "${key.name}" may not run ${command.name} on ${app ?? 'that app'}: it is limited to the apps ${scope}`);
  }
}

function overview(surface: 'local' | 'ssh'): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name} ${usageOf(c)}`.length));
  const lines = [
    surface === 'local' ? 'Usage: berth [--data-dir DIR] COMMAND [ARGS...]' : 'Usage: ssh -p PORT berth@HOST COMMAND [ARGS...]',
    '',
    'berth: git push to deploy, on your own server.',
    '',
  ];
  if (surface === 'local') {
    lines.push('  ' + 'serve [FLAGS]'.padEnd(width) + '  run the platform (see `berth serve --help`)');
    lines.push('  ' + 'install --domain D [FLAGS]'.padEnd(width) + '  install berth as a systemd service, as root (see `berth install --help`)');
    lines.push('  ' + 'uninstall [--purge]'.padEnd(width) + '  remove the service and the binary; the data stays unless --purge');
  }
  for (const c of COMMANDS) lines.push('  ' + `${c.name} ${usageOf(c)}`.trimEnd().padEnd(width) + '  ' + c.summary);
  lines.push('', 'Run `help COMMAND` or `COMMAND --help` for details.');
  return lines.join('\n');
}

function commandHelp(c: Command): string {
  return [`Usage: ${c.name} ${usageOf(c)}`.trimEnd(), '', c.summary, ...(c.help ? ['', c.help] : [])].join('\n');
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}
