// Dokku's output vocabulary, owned here and nowhere else: `-----> step`, `=====> section`,
// detail indented seven spaces, ` !     error`. Every user-facing surface (local CLI, SSH
// command, git push progress) prints through an Output.
import { Writable } from 'node:stream';

/**
 * Every method may return a promise when its sink is full (an SSH client that reads slowly):
 * a producer that streams (logs -t, run) waits for it before it reads more of its source.
 */
export interface Output {
  /** A pipeline step: `-----> Building app from Dockerfile`. */
  step(text: string): void | Promise<void>;
  /** A section heading: `=====> app releases`. */
  section(text: string): void | Promise<void>;
  /** Detail under a step, indented seven spaces; multi-line text is indented line by line. */
  detail(text: string): void | Promise<void>;
  /** An error line: ` !     message`. */
  error(text: string): void | Promise<void>;
  /** Unadorned text (tables, values, JSON), printed as given plus a newline. */
  line(text: string): void | Promise<void>;
  /** Raw bytes to standard output, for commands whose output is data. */
  raw(data: string | Buffer): void | Promise<void>;
}

export const PREFIX = {
  step: '-----> ',
  section: '=====> ',
  detail: '       ',
  error: ' !     ',
} as const;

/** An Output over two byte sinks: decorated lines and data go to `out`, errors to `err`. */
export class StreamOutput implements Output {
  private readonly out: Sink;
  private readonly err: Sink;

  /** Sinks that return a promise when full pass it on to the caller (see Output). */
  constructor(out: Writable | Sink, err?: Writable | Sink) {
    this.out = toFn(out);
    this.err = err ? toFn(err) : this.out;
  }

  step(text: string): void | Promise<void> {
    return this.out(prefixLines(PREFIX.step, text));
  }
  section(text: string): void | Promise<void> {
    return this.out(prefixLines(PREFIX.section, text));
  }
  detail(text: string): void | Promise<void> {
    return this.out(prefixLines(PREFIX.detail, text));
  }
  error(text: string): void | Promise<void> {
    return this.err(prefixLines(PREFIX.error, text));
  }
  line(text: string): void | Promise<void> {
    return this.out(text + '\n');
  }
  raw(data: string | Buffer): void | Promise<void> {
    return this.out(data);
  }
}

type Sink = (s: string | Buffer) => void | Promise<void>;

/** Collects everything printed, for tests and for keeping a build log. */
export class MemoryOutput extends StreamOutput {
  readonly chunks: string[] = [];
  constructor() {
    super((s) => {
      this.chunks.push(s.toString());
    });
  }
  text(): string {
    return this.chunks.join('');
  }
}

function prefixLines(prefix: string, text: string): string {
  const lines = text.replace(/\n$/, '').split('\n');
  return lines.map((l, i) => (i === 0 || prefix !== PREFIX.step ? prefix : PREFIX.detail) + l).join('\n') + '\n';
}

function toFn(w: Writable | Sink): Sink {
  if (typeof w === 'function') return w;
  return (s) => {
    w.write(s);
  };
}

/** Left-aligned columns separated by two spaces. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}
