// One-off processes (`run APP CMD`): a container of the current release's image with the app's
// config, its standard streams wired to the caller (a terminal when the caller has one), removed
// when it exits; the command's exit status is the caller's.
import { randomInt } from 'node:crypto';
import type { Terminal } from '../ui/terminal.ts';
import { log } from '../log.ts';
import { sleep } from '../sleep.ts';
import { buildpackExecCmd } from './buildpack-scripts.ts';
import { limitFor, limitSpec } from './deployment.ts';
import { LABEL } from './engine.ts';
import type { Orchestrator } from './orchestrator.ts';
import { requireCurrent } from './release-flow.ts';

export interface OneOffIo {
  stdin?: NodeJS.ReadableStream;
  /** Output to the caller; a promise means the caller is full, and the container's output is not read until it settles. */
  stdout(data: Buffer): void | Promise<void>;
  stderr(data: Buffer): void | Promise<void>;
  terminal?: Terminal;
  signal: AbortSignal;
}

/** Runs `words` (or an interactive shell when empty) and resolves to its exit status. */
export async function runOneOff(orch: Orchestrator, app: string, words: readonly string[], io: OneOffIo): Promise<number> {
  const engine = orch.engine;
  const record = orch.apps.require(app);
  const release = requireCurrent(record);
  const command = joinCommand(words);
  const dyno = `run.${randomInt(1000, 10000)}`;
  const entrypoint = (await engine.imageConfig(release.image))?.entrypoint ?? [];
  const cmd =
    release.builder === 'buildpacks'
      ? buildpackExecCmd(entrypoint, command)
      : entrypoint.length
        ? [...words]
        : command ? ['/bin/sh', '-c', command] : ['/bin/sh'];
  const limit = limitFor(record.limits, 'run', orch.defaultLimit);
  // On the app's network, as its dynos: it reaches them, and nothing of another app.
  const network = orch.appNetwork(app);
  await engine.ensureNetwork(network, { [LABEL.app]: app }, orch.networkOptions);
  const id = await engine.create({
    name: `${app}.${dyno}.r${release.number}`,
    image: release.image,
    env: { ...record.config, DYNO: dyno, ...(io.terminal ? { TERM: io.terminal.term || 'xterm' } : {}) },
    labels: { [LABEL.app]: app, [LABEL.process]: 'run', [LABEL.release]: String(release.number), [LABEL.dyno]: dyno, [LABEL.role]: 'run' },
    network,
    aliases: [],
    cmd,
    restart: false,
    stdin: io.stdin !== undefined,
    tty: io.terminal !== undefined,
    binds: record.mounts,
    ...limitSpec(limit),
  });
  log.info('run_started', { app, dyno, release: release.number, tty: io.terminal !== undefined });
  const onAbort = () => void engine.stopAndRemove(id, 1).catch(() => {});
  io.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const attached = await engine.attach(id, { stdin: io.stdin !== undefined, tty: io.terminal !== undefined, onStdout: io.stdout, onStderr: io.stderr });
    if (io.stdin) {
      const stdin = io.stdin;
      // The caller's input waits while the container's side is full.
      stdin.on('data', (d: Buffer) => {
        const pending = attached.write(d);
        if (!pending) return;
        stdin.pause();
        void pending.then(() => stdin.resume());
      });
      // On a terminal, end of input is a ^D the client sends as a byte; closing the attach early
      // would cut the output off.
      if (!io.terminal) io.stdin.once('end', () => attached.end());
    }
    await engine.start(id);
    if (io.terminal) {
      const t = io.terminal;
      await engine.resize(id, t.rows, t.cols).catch(() => {});
      t.onResize((rows, cols) => void engine.resize(id, rows, cols).catch(() => {}));
    }
    const { code } = await engine.wait(id);
    // The last output may still be on its way; a connection that never ends is not waited for.
    const grace = new AbortController();
    await Promise.race([attached.ended, sleep(2000, grace.signal).catch(() => {})]);
    grace.abort();
    log.info('run_finished', { app, dyno, code });
    return code;
  } finally {
    io.signal.removeEventListener('abort', onAbort);
    await engine.stopAndRemove(id, 0).catch((e) => log.warn('run_remove_failed', { app, dyno, error: e }));
  }
}

/**
 * The command line a one-off runs in a shell: one word is taken as written (so `run APP 'echo
 * $HOME'` expands in the container); several are joined, quoting the words that hold spaces or quotes.
 */
export function joinCommand(words: readonly string[]): string {
  if (words.length === 1) return words[0]!;
  return words.map((w) => (w === '' || /[\s'"\\]/.test(w) ? `'${w.replace(/'/g, `'\\''`)}'` : w)).join(' ');
}

