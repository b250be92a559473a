// The entry point: reads the command line, then runs the daemon (`serve`) or one admin command
// against the daemon of a data dir. Heavy modules load only on the path that needs them, so
// `berth --version` and CLI commands start fast.
import { runRemote } from './cli/control-client.ts';
import { StreamOutput } from './ui/output.ts';
import { dataPaths, defaultConfig } from './config.ts';
import { describeForUser, UserError } from './errors.ts';
import { setLogSink } from './log.ts';
import { VERSION } from './version.ts';
import { readAll } from './read-all.ts';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import sea from 'node:sea';

const stdout = new StreamOutput(process.stdout, process.stderr);
/** How long a command waits for a control plane that is being restarted or upgraded. */
const CONTROL_WAIT_MS = 120_000;

export async function main(argv: string[]): Promise<number> {
  const { dataDir, rest } = takeGlobalFlags(argv);
  const [command, ...args] = rest;
  // Answered here, without the daemon, so it is fast; the registry's `version` prints the same.
  if (command === '--version' || command === '-v' || (command === 'version' && args.length === 0)) {
    stdout.line(`berth ${VERSION} (node ${process.version})`);
    return 0;
  }
  if (command === '__index-pack') {
    // The daemon runs itself with this hidden sub-command to index a large push off its main thread.
    const { runIndexPackCommand } = await import('./git/index-pack-process.ts');
    return runIndexPackCommand(args);
  }
  if (command === '__git-read') {
    // ... and to read pushed objects (files of a commit, the build context) off its main thread.
    const { runGitReadCommand } = await import('./git/object-reader.ts');
    return runGitReadCommand(args);
  }
  // The supervisor (`serve`) runs itself with these hidden sub-commands for its two children.
  if (command === '__proxy') {
    const { runProxy } = await import('./daemon/proxy-process.ts');
    return runProxy(args);
  }
  if (command === '__control') {
    const { runControl } = await import('./daemon/control-process.ts');
    return runControl(args);
  }
  // Asked of the supervisor, not of the control plane it replaces; its help is the registry's.
  if (command === 'upgrade' && !args.includes('--help') && !args.includes('-h')) {
    const { runUpgrade } = await import('./daemon/upgrade-command.ts');
    return runUpgrade(dataDir ?? defaultConfig().dataDir, args, stdout);
  }
  if (command === 'install' || command === 'uninstall') {
    const [{ INSTALL_HELP, runInstall }, { runUninstall }] = await Promise.all([import('./cli/install.ts'), import('./cli/uninstall.ts')]);
    if (args.includes('--help') || args.includes('-h')) {
      stdout.line(INSTALL_HELP);
      return 0;
    }
    const withDataDir = dataDir && command === 'install' ? ['--data-dir', dataDir, ...args] : args;
    return (command === 'install' ? runInstall : runUninstall)(withDataDir, {
      out: stdout,
      isRoot: process.getuid?.() === 0,
      executable: sea.isSea() ? process.execPath : undefined,
      systemdRunning: fs.existsSync('/run/systemd/system'),
      runProgram: (program, programArgs) => {
        const result = spawnSync(program, programArgs, { encoding: 'utf8' });
        return { code: result.error ? 127 : (result.status ?? 1), output: `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? result.error.message : ''}` };
      },
      readStdin: () => readAll(process.stdin),
      cwd: process.cwd(),
    });
  }
  if (command === 'serve') {
    const { serve } = await import('./serve.ts');
    return serve(dataDir ? ['--data-dir', dataDir, ...args] : args);
  }
  return runAdminCommand(dataDir ?? defaultConfig().dataDir, rest);
}

/** `--data-dir D` may come before the command; BERTH_DATA_DIR is the same. */
function takeGlobalFlags(argv: string[]): { dataDir: string | undefined; rest: string[] } {
  let dataDir = process.env.BERTH_DATA_DIR || undefined;
  const rest = [...argv];
  while (rest[0]?.startsWith('--data-dir')) {
    const flag = rest.shift()!;
    dataDir = flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : rest.shift();
    if (!dataDir) throw new UserError('bad_arguments', '--data-dir needs a value', { exitCode: 2 });
  }
  return { dataDir, rest };
}

async function runAdminCommand(dataDir: string, words: string[]): Promise<number> {
  setLogSink(() => {});
  const paths = dataPaths(dataDir);
  let remote = await runRemote(paths.socket, words, process);
  if (remote !== undefined) return remote;
  const { supervisorAnswers } = await import('./daemon/upgrade-socket.ts');
  if (await supervisorAnswers(paths.supervisorSocket)) {
    // berth serve runs, and its control plane is being restarted or upgraded: wait for it,
    // rather than act on the state on disk behind its back.
    const deadline = Date.now() + CONTROL_WAIT_MS;
    while (remote === undefined && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      remote = await runRemote(paths.socket, words, process);
    }
    if (remote !== undefined) return remote;
    throw new UserError('control_unavailable', `berth serve runs for ${dataDir}, but its control plane did not answer within ${CONTROL_WAIT_MS / 1000} s`, {
      hint: 'see its log; `berth status` shows its processes once it answers',
    });
  }
  // No daemon: run against the state on disk; commands that need containers say so.
  const [{ loadState }, { runCommand }] = await Promise.all([import('./platform/state.ts'), import('./cli/registry.ts')]);
  const state = await loadState({ ...defaultConfig(), dataDir });
  return runCommand(words, {
    out: stdout,
    caller: { kind: 'local' },
    state,
    daemon: undefined,
    cwd: process.cwd(),
    signal: new AbortController().signal,
    readStdin: () => readAll(process.stdin),
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    const { lines, exitCode } = describeForUser(e, 'berth');
    for (const line of lines) stdout.error(line);
    process.exitCode = exitCode;
  },
);
