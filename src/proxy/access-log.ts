// The proxy's access log: one JSON object per answered request, appended to a file in the data
// dir (logs/access.log), apart from the daemon's own log. Lines are batched and written off the
// event loop every FLUSH_MS, so a request costs one string; the file is rotated once it passes
// its size (one older file is kept, access.log.1).
import fs from 'node:fs';
import path from 'node:path';
import { log } from '../log.ts';

/** How often queued lines go to the file. */
export const FLUSH_MS = 200;
/** Past this size the file becomes access.log.1 (replacing the previous one) and a new one starts. */
export const ROTATE_BYTES = 64 * 1024 * 1024;
/** Lines waiting while the disk is slow are capped; beyond it they are counted and dropped, never held. */
export const MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** Lines are encoded into buffers of this size. */
const BUFFER_BYTES = 256 * 1024;

export interface AccessRecord {
  /** Request id: the one the app saw in X-Request-Id. */
  id: string;
  client: string;
  proto: string;
  host: string;
  method: string;
  /** Without the query string: queries carry tokens. */
  path: string;
  /** The answer's status; 499 when the client left before an answer. */
  status: number;
  /** Bytes sent to the client (head and body). */
  bytes: number;
  /** From the whole request head read to the last byte sent. */
  ms: number;
  /** performance.now() when the answer ended, if the caller read it (saves reading the wall clock per line). */
  at?: number;
  app: string | undefined;
  target: string | undefined;
}

export class AccessLog {
  readonly file: string;
  readonly #rotateBytes: number;
  #fd: number | undefined;
  #size = 0;
  /** Lines are encoded straight into this buffer; a full one joins the queue and a fresh one takes its place. */
  #buf = Buffer.allocUnsafe(BUFFER_BYTES);
  #len = 0;
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Date.now() - performance.now(), taken whenever the flush timer is armed, to date records by their `at`. */
  #clockOffset = 0;
  #writing: Promise<void> | undefined;
  #closed = false;

  private constructor(file: string, fd: number, size: number, rotateBytes: number) {
    this.file = file;
    this.#fd = fd;
    this.#size = size;
    this.#rotateBytes = rotateBytes;
  }

  static async open(file: string, options: { rotateBytes?: number } = {}): Promise<AccessLog> {
    await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = await new Promise<number>((resolve, reject) => fs.open(file, 'a', 0o600, (e, fd) => (e ? reject(e) : resolve(fd))));
    const { size } = fs.fstatSync(fd);
    return new AccessLog(file, fd, size, options.rotateBytes ?? ROTATE_BYTES);
  }

  write(record: AccessRecord): void {
    if (this.#closed) return;
    if (!this.#timer) {
      this.#clockOffset = Date.now() - performance.now();
      this.#timer = setTimeout(this.#flushSoon, FLUSH_MS);
      this.#timer.unref();
    }
    escaped = false;
    const line = formatRecord(record, record.at === undefined ? Date.now() : record.at + this.#clockOffset);
    // A UTF-16 unit never takes more than 3 bytes in UTF-8.
    if (this.#len + line.length * 3 > this.#buf.length) {
      if (this.#queuedBytes > MAX_PENDING_BYTES) {
        this.#dropped++;
        return;
      }
      this.#enqueue();
    }
    // A line with nothing escaped is ASCII (see formatRecord): copied as bytes, not encoded.
    this.#len += this.#buf.write(line, this.#len, escaped ? 'utf8' : 'latin1');
  }

  /** Writes what is queued; resolves when it is in the file. */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#writing) await this.#writing;
    this.#enqueue();
    if (this.#queue.length === 0 || this.#fd === undefined) return;
    const chunks = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#writing = this.#append(chunks);
    try {
      await this.#writing;
    } finally {
      this.#writing = undefined;
    }
  }

  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }

  #enqueue(): void {
    if (this.#len === 0) return;
    this.#queue.push(this.#buf.subarray(0, this.#len));
    this.#queuedBytes += this.#len;
    this.#buf = Buffer.allocUnsafe(BUFFER_BYTES);
    this.#len = 0;
  }

  readonly #flushSoon = (): void => {
    this.#timer = undefined;
    this.flush().catch((e) => log.error('access_log_write_failed', { file: this.file, error: e }));
  };

  async #append(chunks: Buffer[]): Promise<void> {
    const fd = this.#fd!;
    for (const data of chunks) {
      let offset = 0;
      while (offset < data.length) {
        const written = await new Promise<number>((resolve, reject) =>
          fs.write(fd, data, offset, data.length - offset, null, (e, bytesWritten) => (e ? reject(e) : resolve(bytesWritten))),
        );
        offset += written;
      }
      this.#size += data.length;
    }
    if (this.#dropped > 0) {
      log.warn('access_log_lines_dropped', { file: this.file, lines: this.#dropped, reason: 'the disk did not keep up' });
      this.#dropped = 0;
    }
    if (this.#size >= this.#rotateBytes) await this.#rotate();
  }

  async #rotate(): Promise<void> {
    await fs.promises.rename(this.file, `${this.file}.1`);
    const fd = fs.openSync(this.file, 'a', 0o600);
    fs.closeSync(this.#fd!);
    this.#fd = fd;
    this.#size = 0;
  }
}

/**
 * One JSON line, dated `time` (ms since the epoch). The id, client address, method and app were
 * checked on the way in (request-id characters, an address, token characters, an app name) and go
 * in as they are; the host, path and target are escaped when they hold anything JSON must escape
 * or anything beyond ASCII, so a line where nothing was escaped is ASCII.
 */
export function formatRecord(r: AccessRecord, time = Date.now()): string {
  return (
    `{"time":"${isoAt(time)}","id":"${r.id}","client":"${r.client}","proto":"${r.proto}","host":${lastHost.quote(r.host)},"method":"${r.method}",` +
    `"path":${str(r.path)},"status":${r.status},"bytes":${r.bytes},"ms":${hundredths(r.ms)},` +
    `"app":${r.app === undefined ? 'null' : `"${r.app}"`},"target":${r.target === undefined ? 'null' : lastTarget.quote(r.target)}}\n`
  );
}

const NEEDS_ESCAPE = /["\\\x00-\x1f\x7f-\uffff]/;

/** Set by str() when a value went through JSON.stringify (and so may hold non-ASCII characters). */
let escaped = false;

/** A value quoted as a JSON string by str(), kept while it repeats from line to line (as hosts and targets do). */
class RepeatedValue {
  #value = '';
  #quoted = '""';
  #escaped = false;

  quote(value: string): string {
    if (value !== this.#value) {
      this.#value = value;
      this.#escaped = NEEDS_ESCAPE.test(value);
      this.#quoted = this.#escaped ? JSON.stringify(value) : `"${value}"`;
    }
    if (this.#escaped) escaped = true;
    return this.#quoted;
  }
}

const lastHost = new RepeatedValue();
const lastTarget = new RepeatedValue();

function str(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  escaped = true;
  return JSON.stringify(value);
}

/**
 * `ms` rounded to hundredths, written as Math.round(ms * 100) / 100 would be (1.2, not 1.20), from
 * integers: four times cheaper than turning a fraction into text.
 */
function hundredths(ms: number): string {
  const total = Math.round(ms * 100);
  const whole = Math.floor(total / 100);
  const part = total - whole * 100;
  if (part === 0) return `${whole}`;
  if (part % 10 === 0) return `${whole}.${part / 10}`;
  return part < 10 ? `${whole}.0${part}` : `${whole}.${part}`;
}

let lastSecond = -1;
/** `2026-11-27T10:00:00.` of lastSecond. */
let secondPrefix = '';
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);

/** The time as ISO 8601: the date and second formatted once per second, the milliseconds looked up. */
function isoAt(time: number): string {
  const ms = Math.floor(time);
  const second = Math.floor(ms / 1000);
  if (second !== lastSecond) {
    const iso = new Date(ms).toISOString();
    // Years beyond 9999 make toISOString longer; those keep the whole string.
    if (iso.length !== 24) return iso;
    lastSecond = second;
    secondPrefix = iso.slice(0, 20);
  }
  return secondPrefix + MILLIS[ms - second * 1000]!;
}
