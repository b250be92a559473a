// A backing service's data, moved out and in through processes run in its running container
// (Engine.exec), for any kind: export (a dump streamed out), import (an input streamed in, or a
// data file replaced and the server restarted), connect (its client, on a terminal or reading
// stdin), backup (an export into a backup file) and restore (an import from one), and readiness.
// Nothing is held whole in memory: a dump goes out as fast as its reader takes it.
import { once } from 'node:events';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { UserError } from '../errors.ts';
import { log } from '../log.ts';
import { NotFoundError, type Engine, type ExecOptions } from '../orchestrator/engine.ts';
import { sleep } from '../sleep.ts';
import type { BackupFile, BackupStore } from './backups.ts';
import type { DataFileImport, KindCommand, ServiceKind, ServiceRecordView, StagedImport } from './kinds/kind.ts';

/** A service whose container runs, as data-ops acts on it. */
export interface ServiceHandle {
  engine: Engine;
  /** The id of the service's running container. */
  container: string;
  kind: ServiceKind;
  service: ServiceRecordView;
  /**
   * Stops and starts the service's container (the caller's to do: it owns the container, its
   * record and its links), resolving once the service accepts connections again, with the id of
   * the container it runs in now. Used by an import that replaces the data file.
   */
  restart(): Promise<string>;
  /** The id of the service's container now, running or not (after a failed restart); undefined when it has none. */
  current(): Promise<string | undefined>;
}

/** The client's terminal (`ssh -t`), for connect. */
export interface TerminalView {
  term: string;
  rows: number;
  cols: number;
  onResize(listener: (rows: number, cols: number) => void): void;
}

export interface ConnectIo {
  /** SQL or commands piped in; with a terminal, what the user types. */
  stdin?: Readable;
  terminal?: TerminalView;
  /** Output as it comes; a promise holds the client's output back until it settles. */
  stdout(data: Buffer): void | Promise<void>;
  stderr(data: Buffer): void | Promise<void>;
  signal?: AbortSignal;
}

/** Writes the service's dump to `out` as the server produces it; the bytes written. */
export async function exportData(handle: ServiceHandle, out: Writable, signal?: AbortSignal): Promise<number> {
  let bytes = 0;
  // An output that breaks (a full disk, a client gone) stops the dump at its next write.
  let broken: Error | undefined;
  const onError = (e: Error) => void (broken ??= e);
  out.on('error', onError);
  const write = writerTo(out);
  try {
    await runChecked(handle, 'export', handle.kind.exportCommand(handle.service), {
      onStdout: (d) => {
        if (broken) throw broken;
        bytes += d.length;
        return write(d);
      },
      signal,
    });
  } finally {
    out.off('error', onError);
  }
  if (broken) throw broken;
  return bytes;
}

/**
 * Loads `input` (a dump of this kind: pg_dump custom format or plain SQL; an RDB file) into the
 * service, replacing what it holds. What the import tool prints goes to `progress`.
 */
export async function importData(handle: ServiceHandle, input: Readable, options: { progress?: (data: Buffer) => void | Promise<void>; signal?: AbortSignal } = {}): Promise<void> {
  const head = await peek(input, 8);
  if (head.length === 0) throw new UserError('service_import_empty', `the input is empty: nothing to import into ${describe(handle)}`, { hint: `pipe a dump in: ssh ... ${handle.kind.name}:import ${handle.service.name} < FILE` });
  const how = handle.kind.importCommand(handle.service, head);
  if ('replace' in how) return replaceDataFile(handle, input, how, options.signal);
  if ('stage' in how) return stagedImport(handle, input, how, options);
  await runChecked(handle, 'import', how, { stdin: input, onStdout: options.progress ?? (() => {}), signal: options.signal });
}

/** The service's client, wired to the caller: interactive on a terminal, or reading stdin. Its exit status. */
export async function connect(handle: ServiceHandle, io: ConnectIo): Promise<number> {
  const command = handle.kind.connectCommand(handle.service);
  const { code } = await handle.engine.exec(handle.container, {
    cmd: command.cmd,
    env: [...(command.env ?? []), ...(io.terminal ? [`TERM=${io.terminal.term || 'xterm'}`] : [])],
    ...(command.user ? { user: command.user } : {}),
    ...(io.stdin ? { stdin: io.stdin } : {}),
    ...(io.terminal ? { tty: true, terminal: io.terminal } : {}),
    onStdout: io.stdout,
    onStderr: io.stderr,
    ...(io.signal ? { signal: io.signal } : {}),
  });
  return code;
}

/** An export of the service into a new backup file of `store` (older ones beyond its limit removed). */
export async function backup(handle: ServiceHandle, store: BackupStore, now: Date = new Date(), signal?: AbortSignal): Promise<BackupFile> {
  const file = await store.create(handle.service.name, handle.kind.dumpExtension, now, (out) => exportData(handle, out, signal).then(() => {}));
  log.info('service_backup_made', { kind: handle.kind.name, service: handle.service.name, file: file.name, bytes: file.bytes });
  return file;
}

/** Imports the backup file `name` of `store` into the service. */
export async function restore(handle: ServiceHandle, store: BackupStore, name: string, options: { progress?: (data: Buffer) => void | Promise<void>; signal?: AbortSignal } = {}): Promise<BackupFile> {
  const file = await store.find(name);
  const input = fs.createReadStream(file.path);
  try {
    await importData(handle, input, options);
  } finally {
    input.destroy();
  }
  log.info('service_backup_restored', { kind: handle.kind.name, service: handle.service.name, file: file.name });
  return file;
}

/** How long one readiness check may run: a server that hangs (a ping that never answers) is not ready. */
export const READY_CHECK_TIMEOUT_MS = 5000;

/** Runs the kind's readiness command once: whether it exited 0 in time, and the end of what it printed. */
export async function checkReady(engine: Engine, container: string, kind: ServiceKind, service: ServiceRecordView, options: { checkTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ ready: boolean; output: string }> {
  const command = kind.readyCommand(service);
  let output = '';
  const collect = (d: Buffer) => void (output = (output + d.toString('utf8')).slice(-500));
  const timeout = AbortSignal.timeout(options.checkTimeoutMs ?? READY_CHECK_TIMEOUT_MS);
  try {
    const { code } = await engine.exec(container, { ...execCommand(command), onStdout: collect, onStderr: collect, signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout });
    return { ready: code === 0, output: output.trim() };
  } catch (e) {
    options.signal?.throwIfAborted();
    // The container is gone: waiting longer brings nothing.
    if (e instanceof NotFoundError) throw e;
    // Not running (yet), or the check did not answer in time: not ready.
    return { ready: false, output: timeout.aborted ? `${command.cmd.join(' ')} did not answer within ${options.checkTimeoutMs ?? READY_CHECK_TIMEOUT_MS} ms` : output.trim() };
  }
}

/**
 * Waits until the service accepts connections (the kind's readiness command exits 0, each try
 * bounded by `checkTimeoutMs`); a UserError after `timeoutMs` carrying the last try's output.
 */
export async function waitReady(engine: Engine, container: string, kind: ServiceKind, service: ServiceRecordView, options: { timeoutMs?: number; checkTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const started = performance.now();
  for (;;) {
    const { ready, output } = await checkReady(engine, container, kind, service, options);
    if (ready) return;
    if (performance.now() - started > timeoutMs) {
      throw new UserError('service_not_ready', `${kind.name} service ${service.name} did not accept connections within ${Math.round(timeoutMs / 1000)} s${output ? `: ${output.split('\n').pop()}` : ''}`, {
        hint: `see what it says: ${kind.name}:logs ${service.name}`,
      });
    }
    await sleep(250, options.signal);
  }
}

// ---------------------------------------------------------------------------------------------

/** Most of a failed command's stderr that is kept for its error message. */
const STDERR_KEPT = 4096;

/** Runs a command of the kind; a UserError with the end of its stderr when it fails. */
async function runChecked(handle: ServiceHandle, what: string, command: KindCommand, io: Pick<ExecOptions, 'stdin' | 'onStdout' | 'signal'>): Promise<void> {
  const stderr = tail(STDERR_KEPT);
  const { code } = await handle.engine.exec(handle.container, { ...execCommand(command), ...(io.stdin ? { stdin: io.stdin } : {}), onStdout: io.onStdout, onStderr: stderr.add, ...(io.signal ? { signal: io.signal } : {}) });
  if (code !== 0) {
    throw new UserError(`service_${what}_failed`, `${what} of ${describe(handle)} failed: ${command.cmd[0]} exited with status ${code}${stderr.text() ? `: ${stderr.text()}` : ''}`);
  }
}

/**
 * Receives the whole input into a file of the container, then loads it, then removes it. The
 * load starts only after a clean end of input: a broken input fails the receiving process, and a
 * caller gone by then (an SSH channel's stream ends before the channel closes) is an abort.
 */
async function stagedImport(handle: ServiceHandle, input: Readable, how: StagedImport, options: { progress?: (data: Buffer) => void | Promise<void>; signal?: AbortSignal }): Promise<void> {
  const file = `${how.dir}/.berth-import-${randomBytes(6).toString('hex')}`;
  const asOwner = (cmd: string[]): KindCommand => ({ cmd, user: how.user });
  try {
    await runChecked(handle, 'import', asOwner(['sh', '-c', 'umask 077 && cat > "$1"', 'sh', file]), { stdin: input, onStdout: () => {}, ...(options.signal ? { signal: options.signal } : {}) });
    if (input.errored) throw input.errored;
    options.signal?.throwIfAborted();
    await runChecked(handle, 'import', how.load(file), { onStdout: options.progress ?? (() => {}), ...(options.signal ? { signal: options.signal } : {}) });
  } finally {
    await runChecked(handle, 'import', asOwner(['rm', '-f', file]), { onStdout: () => {} }).catch(() => {});
  }
}

/** Receives the input next to the data file, checks it, holds the server's writes, swaps the file in and restarts. */
async function replaceDataFile(handle: ServiceHandle, input: Readable, how: DataFileImport, signal?: AbortSignal): Promise<void> {
  const dir = how.file.slice(0, how.file.lastIndexOf('/')) || '/';
  const incoming = `${dir}/.berth-import-${randomBytes(6).toString('hex')}`;
  const asOwner = (cmd: string[]): KindCommand => ({ cmd, user: how.user });
  await runChecked(handle, 'import', asOwner(['sh', '-c', 'cat > "$1"', 'sh', incoming]), { stdin: input, onStdout: () => {}, signal });
  let swapped = false;
  try {
    try {
      await runChecked(handle, 'import', how.check(incoming), { onStdout: () => {}, signal });
    } catch (e) {
      throw new UserError('service_import_invalid', `the input is not a data file ${handle.kind.name} can load; ${describe(handle)} is unchanged`, { cause: e, hint: `give it a file made by ${handle.kind.name}:export or ${handle.kind.name}:backup` });
    }
    await runChecked(handle, 'import', how.hold, { onStdout: () => {}, signal });
    await runChecked(handle, 'import', how.swap(incoming), { onStdout: () => {}, signal });
    swapped = true;
  } finally {
    if (!swapped) await runChecked(handle, 'import', asOwner(['rm', '-f', incoming]), { onStdout: () => {} }).catch(() => {});
  }
  log.info('service_data_file_replaced', { kind: handle.kind.name, service: handle.service.name });
  // From here on nothing is cancelled: the server comes back on the imported data, or on the previous data.
  let running: string;
  try {
    running = await handle.restart();
  } catch (e) {
    log.error('service_import_restart_failed', { kind: handle.kind.name, service: handle.service.name, error: e });
    const back = await handle
      .current()
      .then((id) => runOn({ ...handle, container: id ?? handle.container }, how.restorePrevious))
      .then(() => handle.restart())
      .then(() => true, () => false);
    throw new UserError('service_import_failed', `${describe(handle)} did not start on the imported data: ${(e as Error).message}; ${back ? 'its previous data is back' : `its previous data is kept beside it in ${dir} (.before-import)`}`, {
      cause: e,
      hint: `see what it says: ${handle.kind.name}:logs ${handle.service.name}`,
    });
  }
  await runOn({ ...handle, container: running }, how.dropPrevious).catch((e: unknown) => log.warn('service_import_cleanup_failed', { kind: handle.kind.name, service: handle.service.name, error: e }));
}

/** Runs a command in the service's container as it is now (after a restart, a new one). */
async function runOn(handle: ServiceHandle, command: KindCommand): Promise<void> {
  await runChecked(handle, 'import', command, { onStdout: () => {} });
}

function execCommand(command: KindCommand): Pick<ExecOptions, 'cmd' | 'env' | 'user'> {
  return { cmd: command.cmd, ...(command.env ? { env: command.env } : {}), ...(command.user ? { user: command.user } : {}) };
}

function describe(handle: ServiceHandle): string {
  return `${handle.kind.name} ${handle.service.name}`;
}

/** A write into `out` that returns a promise while `out` is full (backpressure), rejecting when it breaks. */
function writerTo(out: Writable): (data: Buffer) => void | Promise<void> {
  return (data) => {
    if (out.destroyed) throw new Error('the output was closed');
    if (out.write(data)) return;
    return new Promise<void>((resolve, reject) => {
      const done = (e?: Error) => {
        out.off('drain', onDrain);
        out.off('close', onClose);
        out.off('error', onError);
        if (e) reject(e);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new Error('the output was closed'));
      const onError = (e: Error) => done(e);
      out.on('drain', onDrain);
      out.on('close', onClose);
      out.on('error', onError);
    });
  };
}

/** Reads the first `n` bytes of `input` (fewer when it is shorter) and puts them back. */
async function peek(input: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < n) {
    const chunk = input.read() as Buffer | string | null;
    if (chunk !== null) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      chunks.push(b);
      size += b.length;
      continue;
    }
    if (input.readableEnded || input.destroyed) break;
    const settled = new AbortController();
    try {
      await Promise.race([once(input, 'readable', { signal: settled.signal }), once(input, 'end', { signal: settled.signal })]);
    } finally {
      settled.abort();
    }
  }
  const head = Buffer.concat(chunks);
  if (head.length) input.unshift(head);
  return head.subarray(0, n);
}

/** The last `max` bytes written to it, as text. */
function tail(max: number): { add(data: Buffer): void; text(): string } {
  let kept = Buffer.alloc(0);
  return {
    add: (data) => {
      kept = Buffer.concat([kept, data]);
      if (kept.length > max) kept = kept.subarray(kept.length - max);
    },
    text: () => kept.toString('utf8').trim(),
  };
}
