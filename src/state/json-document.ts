// One JSON document of state: a schema version, a parser that checks the shape, atomic writes
// serialised per document so two writers never interleave.
import fs from 'node:fs/promises';
import path from 'node:path';
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
  /** Checks and converts the parsed JSON (without the `schema` field); throws with a reason if the shape is wrong. */
  parse(raw: Record<string, unknown>): T;
  /** The value of a document that does not exist yet. */
  empty(): T;
  /**
   * Upgrades from older versions: `migrate[n]` turns a version-n document (without `schema`)
   * into a version n+1 one. A document is refused unless every step up to `schema` is here.
   */
  migrate?: Record<number, (raw: Record<string, unknown>) => Record<string, unknown>>;
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

  async read(): Promise<T> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.spec.empty();
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
    try {
      return this.spec.parse(rest);
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

  /** Moves a document that cannot be read aside, so one bad entry never wipes the rest. */
  async quarantine(): Promise<string> {
    const dest = path.join(path.dirname(this.file), '..', 'quarantine', `${path.basename(this.file)}.${Date.now()}`);
    await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    await fs.rename(this.file, dest);
    return dest;
  }
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
