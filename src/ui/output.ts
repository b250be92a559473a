// Dokku's output vocabulary, owned here and nowhere else: `-----> step`, `=====> section`,
// detail indented seven spaces, ` !     error`. Every user-facing surface (local CLI, SSH
// command, git push progress) prints through an Output.
import { Writable } from 'node:stream';

export interface Output {
  /** A pipeline step: `-----> Building app from Dockerfile`. */
  step(text: string): void;
  /** A section heading: `=====> app releases`. */
  section(text: string): void;
  /** Detail under a step, indented seven spaces; multi-line text is indented line by line. */
  detail(text: string): void;
  /** An error line: ` !     message`. */
  error(text: string): void;
  /** Unadorned text (tables, values, JSON), printed as given plus a newline. */
  line(text: string): void;
  /** Raw bytes to standard output, for commands whose output is data. */
  raw(data: string | Buffer): void;
}

export const PREFIX = {
  step: '-----> ',
  section: '=====> ',
  detail: '       ',
  error: ' !     ',
} as const;

/** An Output over two byte sinks: decorated lines and data go to `out`, errors to `err`. */
export class StreamOutput implements Output {
  private readonly out: (s: string | Buffer) => void;
  private readonly err: (s: string | Buffer) => void;

  constructor(out: Writable | ((s: string | Buffer) => void), err?: Writable | ((s: string | Buffer) => void)) {
    this.out = toFn(out);
    this.err = err ? toFn(err) : this.out;
  }

  step(text: string): void {
    this.out(prefixLines(PREFIX.step, text));
  }
  section(text: string): void {
    this.out(prefixLines(PREFIX.section, text));
  }
  detail(text: string): void {
    this.out(prefixLines(PREFIX.detail, text));
  }
  error(text: string): void {
    this.err(prefixLines(PREFIX.error, text));
  }
  line(text: string): void {
    this.out(text + '\n');
  }
  raw(data: string | Buffer): void {
    this.out(data);
  }
}

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

function toFn(w: Writable | ((s: string | Buffer) => void)): (s: string | Buffer) => void {
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
