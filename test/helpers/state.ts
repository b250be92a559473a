// For tests of the state documents: a data dir with a document written by hand, the log lines a
// load writes, and what it put in the quarantine folder.
import fs from 'node:fs';
import path from 'node:path';
import { setLogSink } from '../../src/log.ts';
import { tempDir } from './temp.ts';

/** A fresh data dir with `state/NAME` holding `doc` as JSON; returns the dir and the file. */
export function stateFile(name: string, doc: unknown): { dir: string; file: string } {
  const dir = tempDir('state');
  const file = path.join(dir, 'state', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return { dir, file };
}

/** Runs `fn` and returns the log lines it wrote, parsed. */
export async function logOf(fn: () => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  try {
    await fn();
  } finally {
    setLogSink((line) => process.stderr.write(line + '\n'));
  }
  return lines;
}

export interface QuarantinedEntries {
  file: string;
  entries: Array<Record<string, unknown> & { entry: string; reason: string; value: unknown }>;
}

/** The files in DIR/quarantine: whole documents by name, and the parsed files of set-aside entries. */
export function quarantine(dir: string): { documents: string[]; entries: QuarantinedEntries[] } {
  const folder = path.join(dir, 'quarantine');
  const names = fs.existsSync(folder) ? fs.readdirSync(folder).sort() : [];
  return {
    documents: names.filter((n) => !n.endsWith('.entries.json')),
    entries: names.filter((n) => n.endsWith('.entries.json')).map((n) => JSON.parse(fs.readFileSync(path.join(folder, n), 'utf8')) as QuarantinedEntries),
  };
}
