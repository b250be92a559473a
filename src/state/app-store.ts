// Apps and their releases: one JSON document per app under state/apps, restored app by app
// (a document that cannot be read is quarantined and reported, the others load). Each app has
// an id made at creation that no later app of the same name shares: key scopes name apps by it.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isValidAppName, validateAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';
import { defaultSettings, migrateAppFrom1, parseReleaseDetails, parseSettings, type AppSettings, type BuilderName, type ReleaseDetails } from './app-settings.ts';
import { check, JsonDocument, type DocumentSpec } from './json-document.ts';

export interface Release extends ReleaseDetails {
  /** 1, 2, 3 ... per app; never reused. */
  number: number;
  /** Docker image reference, e.g. berth/app:r3. */
  image: string;
  /** Commit the release was built from. */
  commit: string;
  builder: BuilderName;
  createdAt: string;
  /** Name of the SSH key that pushed it. */
  createdBy: string;
}

export interface AppRecord extends AppSettings {
  /** Made when the app is created and kept through renames; never given to another app. */
  id: string;
  name: string;
  createdAt: string;
  releases: Release[];
  /** Number of the release that is serving, or null before the first successful deploy. */
  current: number | null;
}

const APP_SCHEMA = 3;

/** A new app id. */
export function newAppId(): string {
  return randomUUID();
}

const appSpec = (name: string): DocumentSpec<AppRecord> => ({
  schema: APP_SCHEMA,
  empty: () => ({ id: newAppId(), name, createdAt: new Date().toISOString(), releases: [], current: null, ...defaultSettings() }),
  // Schema 3 gave apps ids: an app from before gets one when it is first loaded (and it is written back).
  migrate: { 1: migrateAppFrom1, 2: (raw) => ({ ...raw, id: newAppId() }) },
  parse(raw) {
    if (!isValidAppName(name)) throw new Error(`"${name}" is not a valid app name`);
    const recName = check.string(raw.name, 'name');
    if (recName !== name) throw new Error(`name "${recName}" does not match the file name`);
    const releases = check.array(raw.releases, 'releases').map((r, i) => {
      const o = check.object(r, `releases[${i}]`);
      return {
        number: check.number(o.number, `releases[${i}].number`),
        image: check.string(o.image, `releases[${i}].image`),
        commit: check.string(o.commit, `releases[${i}].commit`),
        ...parseReleaseDetails(o, `releases[${i}]`),
        createdAt: check.string(o.createdAt, `releases[${i}].createdAt`),
        createdBy: check.string(o.createdBy, `releases[${i}].createdBy`),
      } satisfies Release;
    });
    const current = raw.current === null ? null : check.number(raw.current, 'current');
    return { id: check.string(raw.id, 'id'), name: recName, createdAt: check.string(raw.createdAt, 'createdAt'), releases, current, ...parseSettings(raw) };
  },
});

export class AppStore {
  private readonly dir: string;
  private readonly apps = new Map<string, AppRecord>();
  private readonly docs = new Map<string, JsonDocument<AppRecord>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Loads every app document; returns the names of documents that were quarantined. */
  async load(): Promise<string[]> {
    const quarantined: string[] = [];
    let files: string[];
    try {
      files = (await fs.readdir(this.dir)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return quarantined;
      throw e;
    }
    for (const file of files) {
      if (!file.endsWith('.json')) continue;
      const name = file.slice(0, -'.json'.length);
      const doc = new JsonDocument(path.join(this.dir, file), appSpec(name));
      const restored = await doc.restore({ app: name });
      if (restored.quarantined) {
        quarantined.push(name);
        continue;
      }
      // The id made by the migration must be the one every later load reads.
      if (restored.migrated) await doc.write(restored.value);
      this.apps.set(name, restored.value);
      this.docs.set(name, doc);
    }
    return quarantined;
  }

  list(): AppRecord[] {
    return [...this.apps.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): AppRecord | undefined {
    return this.apps.get(name);
  }

  /** The app, or a UserError that says how to create it. */
  require(name: string): AppRecord {
    validateAppName(name);
    const app = this.apps.get(name);
    if (!app) throw new UserError('app_not_found', `app "${name}" does not exist`, { hint: `create it with \`apps:create ${name}\` or by pushing to it` });
    return app;
  }

  /** The app whose id this is, under whatever name it has now. */
  byId(id: string): AppRecord | undefined {
    for (const app of this.apps.values()) if (app.id === id) return app;
    return undefined;
  }

  /** Creates an app; `id` is made here unless the caller made it first (to record it elsewhere before). */
  async create(name: string, id: string = newAppId()): Promise<AppRecord> {
    validateAppName(name);
    if (this.apps.has(name)) throw new UserError('app_exists', `app "${name}" already exists`);
    const doc = this.doc(name);
    const record: AppRecord = { id, name, createdAt: new Date().toISOString(), releases: [], current: null, ...defaultSettings() };
    await doc.write(record);
    this.apps.set(name, record);
    return record;
  }

  /** Applies `change` to a copy of the app's record, writes it, then makes it the live copy. */
  async update(name: string, change: (draft: AppRecord) => void): Promise<AppRecord> {
    const current = this.require(name);
    const draft = structuredClone(current);
    change(draft);
    await this.doc(name).write(draft);
    this.apps.set(name, draft);
    return draft;
  }

  /**
   * Moves an app's record to a new name: the new document is written (after `change`, given the
   * renamed copy) before the old one is removed, so a crash in between leaves both, never none.
   */
  async rename(from: string, to: string, change: (draft: AppRecord) => void = () => {}): Promise<AppRecord> {
    const current = this.require(from);
    validateAppName(to);
    if (this.apps.has(to)) throw new UserError('app_exists', `app "${to}" already exists`);
    const draft = { ...structuredClone(current), name: to };
    change(draft);
    await this.doc(to).write(draft);
    this.apps.set(to, draft);
    await this.doc(from).remove();
    this.apps.delete(from);
    this.docs.delete(from);
    return draft;
  }

  async remove(name: string): Promise<void> {
    this.require(name);
    await this.doc(name).remove();
    this.apps.delete(name);
    this.docs.delete(name);
  }

  private doc(name: string): JsonDocument<AppRecord> {
    let doc = this.docs.get(name);
    if (!doc) {
      doc = new JsonDocument(path.join(this.dir, `${name}.json`), appSpec(name));
      this.docs.set(name, doc);
    }
    return doc;
  }
}

export function currentRelease(app: AppRecord): Release | undefined {
  return app.current === null ? undefined : app.releases.find((r) => r.number === app.current);
}
