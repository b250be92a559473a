// One JSON document of state: a schema version, a parser that checks the shape, atomic writes
// serialised per document so two writers never interleave, and restoring what can be read: a bad
// entry (one app's settings) is set aside alone, a document that cannot be read at all whole.
import fs from 'node:fs/promises';
import path from 'node:path';
import { log, type LogFields } from '../log.ts';
import { writeFileAtomic } from './atomic-file.ts';

export class StateError extends Error {
  readonly file: string;
  constructor(file: string, message: string, cause?: unknown) {
    super(`${file}: ${message}`, { cause });
    this.name = 'StateError';
    this.file = file;
  }
}

export interface DocumentSpec<T> {
  /** Current schema version; a file with another version is refused rather than misread. */
  schema: number;
  /**
   * Checks and converts the parsed JSON (without the `schema` field); throws with a reason if the
   * document's shape is wrong. Entries read through `entries` (one per app, say) are checked one by
   * one: a bad one is set aside with its reason and the others load.
   */
  parse(raw: Record<string, unknown>, entries: Entries): T;
  /** The value of a document that does not exist yet. */
  empty(): T;
  /**
   * Upgrades from older versions: `migrate[n]` turns a version-n document (without `schema`)
   * into a version n+1 one. A document is refused unless every step up to `schema` is here.
   */
  migrate?: Record<number, (raw: Record<string, unknown>) => Record<string, unknown>>;
}

/** An entry of a document that could not be read. */
export interface BadEntry {
  /** Where it is in the document: `apps.shop`, `autoOff[2]`. */
  path: string;
  /** What the entry's name names (app, domain, key): the log and the quarantine file say `{ app: 'shop' }`. */
  kind: string;
  /** The entry's name: its key in an object, or for an array element what `nameOf` made of it. */
  name: string;
  reason: string;
  value: unknown;
}

/** What restore() could read, and what it set aside. */
export interface Restored<T> {
  value: T;
  /** The whole document could not be read and was moved aside; `value` is the empty document. */
  quarantined: boolean;
  /** Entries moved aside; `value` holds the others. */
  badEntries: BadEntry[];
  /** The file had an older schema version and was migrated in memory (the caller may write it back). */
  migrated: boolean;
}

/** Reads a document's entries one by one, setting aside those that fail (given to DocumentSpec.parse). */
export class Entries {
  readonly bad: BadEntry[] = [];

  /**
   * The properties of the object `value` (found at `where`), each converted by `parse`; `kind` says
   * what a key names (app, domain). A property whose parse throws is set aside with the reason.
   */
  object<V>(value: unknown, where: string, kind: string, parse: (entry: unknown, key: string) => V): Record<string, V> {
    const out: Array<[string, V]> = [];
    for (const [key, entry] of Object.entries(check.object(value, where))) {
      try {
        out.push([key, parse(entry, key)]);
      } catch (e) {
        this.bad.push({ path: `${where}.${key}`, kind, name: key, reason: reasonOf(e), value: entry });
      }
    }
    return Object.fromEntries(out);
  }

  /** The elements of the array `value` (found at `where`), each converted by `parse`; `nameOf` names an element for the log. */
  array<V>(value: unknown, where: string, kind: string, parse: (entry: unknown, index: number) => V, nameOf: (entry: unknown, index: number) => string = defaultName): V[] {
    const out: V[] = [];
    check.array(value, where).forEach((entry, index) => {
      try {
        out.push(parse(entry, index));
      } catch (e) {
        this.bad.push({ path: `${where}[${index}]`, kind, name: nameOf(entry, index), reason: reasonOf(e), value: entry });
      }
    });
    return out;
  }
}

export class JsonDocument<T extends object> {
  readonly file: string;
  private readonly spec: DocumentSpec<T>;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(file: string, spec: DocumentSpec<T>) {
    this.file = file;
    this.spec = spec;
  }

  async exists(): Promise<boolean> {
    return fs.access(this.file).then(
      () => true,
      () => false,
    );
  }

  /** Reads the document; anything that cannot be read, a single entry included, is a StateError. */
  async read(): Promise<T> {
    const { value, bad } = await this.#decode();
    if (bad.length > 0) throw new StateError(this.file, `unexpected content: ${bad.map((b) => `${b.path}: ${b.reason}`).join('; ')}`);
    return value;
  }

  /**
   * Reads the document, setting aside what cannot be read rather than failing, and reports each
   * in the log (with `fields`, such as the app a document belongs to). Bad entries are moved to
   * the quarantine folder and the document is rewritten without them; the rest loads. A document
   * that cannot be read at all is moved there whole, and the value is the empty document.
   * `readOnly`: nothing is moved or rewritten (the bad entries are still left out of the value).
   */
  async restore(fields: LogFields = {}, options: { readOnly?: boolean } = {}): Promise<Restored<T>> {
    let decoded: { value: T; bad: BadEntry[]; migrated: boolean };
    try {
      decoded = await this.#decode();
    } catch (e) {
      // Read only: what cannot be read is left where it is (and loads as empty), for a later load to set aside.
      const movedTo = options.readOnly ? undefined : await this.quarantine().catch(() => undefined);
      log.error('state_document_quarantined', { ...fields, file: this.file, movedTo, error: e });
      return { value: this.spec.empty(), quarantined: true, badEntries: [], migrated: false };
    }
    const { value, bad, migrated } = decoded;
    if (bad.length > 0 && !options.readOnly) {
      const movedTo = await this.#quarantineEntries(bad).catch((e: unknown) => {
        log.error('state_quarantine_failed', { ...fields, file: this.file, error: e });
        return undefined;
      });
      for (const entry of bad) log.error('state_entry_quarantined', { ...fields, file: this.file, entry: entry.path, [entry.kind]: entry.name, reason: entry.reason, movedTo });
      // Only once the entries are safe elsewhere does the document lose them.
      if (movedTo) await this.write(value);
    }
    return { value, quarantined: false, badEntries: bad, migrated };
  }

  async #decode(): Promise<{ value: T; bad: BadEntry[]; migrated: boolean }> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { value: this.spec.empty(), bad: [], migrated: false };
      throw new StateError(this.file, `cannot read: ${(e as Error).message}`, e);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new StateError(this.file, `not valid JSON: ${(e as Error).message}`, e);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new StateError(this.file, 'not a JSON object');
    let { schema, ...rest } = raw as Record<string, unknown>;
    const from = schema;
    while (typeof schema === 'number' && schema < this.spec.schema && this.spec.migrate?.[schema]) {
      try {
        rest = this.spec.migrate[schema]!(rest);
      } catch (e) {
        throw new StateError(this.file, `cannot migrate from schema version ${schema}: ${(e as Error).message}`, e);
      }
      schema += 1;
    }
    if (schema !== this.spec.schema) {
      throw new StateError(this.file, `schema version ${JSON.stringify(schema)} is not the supported version ${this.spec.schema}`);
    }
    const entries = new Entries();
    try {
      return { value: this.spec.parse(rest, entries), bad: entries.bad, migrated: from !== schema };
    } catch (e) {
      throw new StateError(this.file, `unexpected content: ${(e as Error).message}`, e);
    }
  }

  /** Writes the whole document atomically (mode 0600); concurrent writes to one document are queued. */
  write(value: T): Promise<void> {
    const text = JSON.stringify({ schema: this.spec.schema, ...value }, null, 2) + '\n';
    const next = this.writing.then(() => writeFileAtomic(this.file, text));
    this.writing = next.catch(() => {});
    return next;
  }

  async remove(): Promise<void> {
    await this.writing;
    await fs.rm(this.file, { force: true });
  }

  /** Moves a document that cannot be read aside (to the quarantine folder beside its own), so it is kept, not lost. */
  async quarantine(): Promise<string> {
    const dest = this.#quarantinePath('');
    await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    await fs.rename(this.file, dest);
    return dest;
  }

  /** Writes bad entries, with their reasons, to a file of their own in the quarantine folder. */
  async #quarantineEntries(bad: BadEntry[]): Promise<string> {
    const dest = this.#quarantinePath('.entries.json');
    const entries = bad.map((b) => ({ entry: b.path, [b.kind]: b.name, reason: b.reason, value: b.value }));
    await writeFileAtomic(dest, JSON.stringify({ file: this.file, quarantinedAt: new Date().toISOString(), entries }, null, 2) + '\n');
    return dest;
  }

  #quarantinePath(suffix: string): string {
    return path.join(path.dirname(this.file), '..', 'quarantine', `${path.basename(this.file)}.${Date.now()}${suffix}`);
  }
}

function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function defaultName(entry: unknown, index: number): string {
  return typeof entry === 'string' ? entry : `#${index}`;
}

/** Small shape checks for parse() functions. */
export const check = {
  string(v: unknown, what: string): string {
    if (typeof v !== 'string') throw new Error(`${what} must be a string`);
    return v;
  },
  number(v: unknown, what: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${what} must be a number`);
    return v;
  },
  array(v: unknown, what: string): unknown[] {
    if (!Array.isArray(v)) throw new Error(`${what} must be an array`);
    return v;
  },
  object(v: unknown, what: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} must be an object`);
    return v as Record<string, unknown>;
  },
  optionalString(v: unknown, what: string): string | undefined {
    return v === undefined || v === null ? undefined : check.string(v, what);
  },
};
