// Docker's wire formats as berth reads them: the lines of the engine's event stream, turned
// into ContainerEvents, and the 8-byte frames that multiplex a container's stdout and stderr.
import { Writable } from 'node:stream';
import { LABEL, type ContainerEvent, type Role } from './engine.ts';

/** One line of the engine's event stream, as berth reads it. */
export interface EngineEvent {
  id?: string;
  /** The event: start, die, `health_status: unhealthy` ... (`status` in older engines). */
  Action?: string;
  status?: string;
  time?: number;
  timeNano?: number;
  Actor?: { Attributes?: Record<string, string> };
}

const CHANGES: Record<string, ContainerEvent['change']> = {
  start: 'started',
  die: 'died',
  stop: 'died',
  oom: 'died',
  'health_status: unhealthy': 'unhealthy',
  'health_status: healthy': 'healthy',
  destroy: 'removed',
};

/** An engine event about a container of an app, in berth's terms; undefined for any other. */
export function parseContainerEvent(event: EngineEvent): ContainerEvent | undefined {
  const attrs = event.Actor?.Attributes ?? {};
  const reason = event.Action ?? event.status ?? '';
  const change = Object.hasOwn(CHANGES, reason) ? CHANGES[reason] : undefined;
  const app = attrs[LABEL.app];
  const name = attrs.name;
  if (!change || !app || !name || !event.id) return undefined;
  const release = Number(attrs[LABEL.release]);
  const exitCode = reason === 'die' && attrs.exitCode !== undefined ? Number(attrs.exitCode) : undefined;
  return {
    change,
    reason,
    id: event.id,
    name,
    app,
    process: attrs[LABEL.process] ?? 'web',
    release: attrs[LABEL.release] !== undefined && Number.isInteger(release) ? release : undefined,
    dyno: attrs[LABEL.dyno],
    role: (attrs[LABEL.role] ?? 'process') as Role,
    at: event.timeNano ? event.timeNano / 1e6 : (event.time ?? 0) * 1000,
    ...(exitCode !== undefined && Number.isInteger(exitCode) ? { exitCode } : {}),
  };
}

/** Docker's multiplexed log format: 8-byte frames (stream, 0, 0, 0, size32) before each chunk. */
export function demux(raw: Buffer): string {
  if (!Buffer.isBuffer(raw)) return String(raw);
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= raw.length) {
    const kind = raw[i]!;
    const size = raw.readUInt32BE(i + 4);
    if (kind > 2 || raw[i + 1] !== 0 || raw[i + 2] !== 0 || raw[i + 3] !== 0) return raw.toString('utf8');
    parts.push(raw.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * A Writable that hands each chunk to `write`, for demultiplexing into. When `write` returns a
 * promise (its consumer is full), `source` is paused until every such promise has settled: the
 * demultiplexer itself ignores backpressure, so it is applied to what feeds it.
 */
export function sink(write: (data: Buffer) => void | Promise<void>, source?: NodeJS.ReadableStream): Writable {
  let waiting = 0;
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const pending = write(Buffer.from(chunk));
      if (pending && source) {
        if (waiting++ === 0) source.pause();
        void pending.finally(() => {
          if (--waiting === 0) source.resume();
        });
      }
      done();
    },
  });
}

/**
 * The frames of a multiplexed stream (exec and attach without a terminal) as they arrive: 1 for
 * stdout, 2 for stderr. Read one at a time, so a consumer that awaits each frame holds the
 * engine's output back; a frame cut between two chunks is joined, nothing else is kept.
 */
export async function* readFrames(source: AsyncIterable<Buffer>): AsyncGenerator<{ stream: number; data: Buffer }> {
  let rest = Buffer.alloc(0);
  for await (const chunk of source) {
    let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    while (buf.length >= 8) {
      const stream = buf[0]!;
      if (stream > 2 || buf[1] !== 0 || buf[2] !== 0 || buf[3] !== 0) throw new Error('the Docker engine sent a stream that is not multiplexed');
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      const data = buf.subarray(8, 8 + size);
      buf = buf.subarray(8 + size);
      if (size > 0) yield { stream, data };
    }
    rest = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
  }
  if (rest.length) throw new Error(`the Docker engine's stream ended inside a frame (${rest.length} bytes left)`);
}
