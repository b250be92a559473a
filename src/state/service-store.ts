// Backing services (postgres, redis ...): their records in state/services.json (kind, name,
// image, memory, links to apps, exposed port) and each one's generated password in a file of its
// own, DATA/services/KIND/NAME/secret, mode 0600 in a 0700 folder, never in the JSON nor a log.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { isValidAppName } from '../app-name.ts';
import { validateConfigKey } from '../config-vars.ts';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { check, JsonDocument, type DocumentSpec } from './json-document.ts';

/** An app a service is linked to: its network joined, `ALIAS_URL` set in its config. */
export interface ServiceLink {
  app: string;
  /** The config var's prefix: DATABASE gives DATABASE_URL. */
  alias: string;
}

export interface ServiceRecord {
  /** `postgres`, `redis`: a ServiceKind's name. */
  kind: string;
  name: string;
  /** Made at creation; no later service of the same name shares it. */
  id: string;
  /** The image it runs (the kind's default, --postgres-image, or --image at create). */
  image: string;
  /** Bytes of memory (swap included); undefined: no limit. */
  memory?: number;
  createdAt: string;
  /** `local`, or the SSH key's name. */
  createdBy: string;
  /** The fingerprint of the scoped key that created it: that key may manage it while it is linked to nothing. */
  createdByKey?: string;
  links: ServiceLink[];
  /** A host port it is published on (KIND:expose); undefined: reachable from linked apps only. */
  exposedPort?: number;
  /** The host address the exposed port binds to (`KIND:expose --host`); 127.0.0.1 when absent. */
  exposedHost?: string;
  /** When backups are made on their own (KIND:backup-schedule), a five-field cron expression; undefined: none. */
  backupSchedule?: string;
  /**
   * On the swarm scheduler: the Swarm node id of the manager whose engine runs it, where its volume
   * (its data) is. Written when it first runs there (a record of an older berth gets it then).
   */
  nodeId?: string;
}

/** The one validator of service names, applied where a name enters: it names containers, volumes and folders. */
export const SERVICE_NAME_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

export function validateServiceName(name: string): string {
  if (SERVICE_NAME_PATTERN.test(name) && !name.endsWith('-')) return name;
  throw new UserError('invalid_service_name', `invalid service name: ${name === '' ? 'an empty name' : JSON.stringify(name.slice(0, 60))}`, {
    hint: 'a service name starts with a lowercase letter, then lowercase letters, digits or dashes (at most 40 characters, not ending in a dash)',
  });
}

/** A new password: 32 url-safe characters (192 random bits), fit for a URL without escaping. */
export function newServicePassword(): string {
  return randomBytes(24).toString('base64url');
}

interface ServicesDocument {
  services: ServiceRecord[];
}

/** `kinds`: the kinds berth has (an entry of another kind is set aside); undefined: any. */
const specFor = (kinds: readonly string[] | undefined): DocumentSpec<ServicesDocument> => ({
  schema: 1,
  empty: () => ({ services: [] }),
  parse: (raw, entries) => ({
    services: entries.array(raw.services, 'services', 'service', (v) => parseRecord(v, kinds), (s, i) => {
      const o = s as Partial<ServiceRecord> | null;
      return typeof o?.kind === 'string' && typeof o.name === 'string' ? `${o.kind}/${o.name}` : `#${i}`;
    }),
  }),
});

export class ServiceStore {
  readonly #doc: JsonDocument<ServicesDocument>;
  /** DATA/services: a folder per kind, per service, holding its secret (and svc-data's backups). */
  readonly root: string;
  #records: ServiceRecord[] = [];
  /** Changes run one at a time, each on the records the one before left. */
  #changing: Promise<unknown> = Promise.resolve();

  constructor(file: string, root: string, options: { kinds?: readonly string[] } = {}) {
    this.#doc = new JsonDocument(file, specFor(options.kinds));
    this.root = root;
  }

  async load(): Promise<void> {
    this.#records = (await this.#doc.restore()).value.services;
  }

  list(kind?: string): ServiceRecord[] {
    return this.#records.filter((r) => kind === undefined || r.kind === kind).map(copy);
  }

  get(kind: string, name: string): ServiceRecord | undefined {
    const r = this.#records.find((s) => s.kind === kind && s.name === name);
    return r && copy(r);
  }

  require(kind: string, name: string): ServiceRecord {
    const r = this.get(kind, name);
    if (!r) throw new UserError('service_not_found', `no ${kind} service named "${name}"`, { hint: `\`${kind}:list\` shows them; \`${kind}:create ${name}\` makes one` });
    return r;
  }

  /** The services linked to `app`. */
  linkedTo(app: string): ServiceRecord[] {
    return this.#records.filter((r) => r.links.some((l) => l.app === app)).map(copy);
  }

  /** The folder of a service's secret and backups: DATA/services/KIND/NAME (0700). */
  dir(kind: string, name: string): string {
    return path.join(this.root, kind, name);
  }

  /**
   * Adds a record with a new password; the password is on disk (0600) before the record names
   * the service, so a service berth knows of always has its secret.
   */
  create(record: Omit<ServiceRecord, 'id' | 'createdAt' | 'links'>): Promise<ServiceRecord> {
    return this.#serial(async () => {
      if (this.#records.some((r) => r.kind === record.kind && r.name === record.name)) {
        throw new UserError('service_exists', `a ${record.kind} service named "${record.name}" already exists`, { hint: `\`${record.kind}:info ${record.name}\` shows it` });
      }
      const dir = this.dir(record.kind, record.name);
      // A folder left by a service berth forgot (its backups): never taken over, nor removed by a failed create.
      if (await fs.stat(dir).then(() => true, () => false)) {
        throw new UserError('service_data_exists', `the folder ${dir} exists already (a ${record.kind} service's password and backups): berth does not make a new service over it`, {
          hint: `move it away (keep its backups) or remove it, or create the service under another name`,
        });
      }
      await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
      await fs.mkdir(dir, { mode: 0o700 });
      await fs.chmod(dir, 0o700);
      await writeFileAtomic(path.join(dir, 'secret'), newServicePassword() + '\n', 0o600);
      const created: ServiceRecord = { ...record, id: randomUUID(), createdAt: new Date().toISOString(), links: [] };
      await this.#write([...this.#records, created]);
      return copy(created);
    });
  }

  /** The service's password, from its secret file. */
  async password(kind: string, name: string): Promise<string> {
    try {
      return (await fs.readFile(path.join(this.dir(kind, name), 'secret'), 'utf8')).trim();
    } catch (e) {
      throw new Error(`${kind} service ${name}: reading its password: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Changes a record in place (links, exposed port); returns it as it is now. */
  update(kind: string, name: string, change: (draft: ServiceRecord) => void): Promise<ServiceRecord> {
    return this.#serial(async () => {
      const current = this.#records.find((r) => r.kind === kind && r.name === name);
      if (!current) throw new UserError('service_not_found', `no ${kind} service named "${name}"`);
      const draft = copy(current);
      change(draft);
      await this.#write(this.#records.map((r) => (r === current ? draft : r)));
      return copy(draft);
    });
  }

  /** The app `from` is called `to` now: its links follow it. */
  renameApp(from: string, to: string): Promise<void> {
    return this.#serial(() => this.#write(this.#records.map((r) => (r.links.some((l) => l.app === from) ? { ...r, links: r.links.map((l) => (l.app === from ? { ...l, app: to } : l)) } : r))));
  }

  /** The app is destroyed (its network with it): no service is linked to it any more. */
  forgetApp(app: string): Promise<void> {
    return this.#serial(() => this.#write(this.#records.map((r) => (r.links.some((l) => l.app === app) ? { ...r, links: r.links.filter((l) => l.app !== app) } : r))));
  }

  /** Forgets a service: its record, then its folder (secret and backups). */
  remove(kind: string, name: string): Promise<void> {
    return this.#serial(async () => {
      await this.#write(this.#records.filter((r) => !(r.kind === kind && r.name === name)));
      await fs.rm(this.dir(kind, name), { recursive: true, force: true });
    });
  }

  async #write(records: ServiceRecord[]): Promise<void> {
    await this.#doc.write({ services: records });
    this.#records = records;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#changing.then(fn);
    this.#changing = next.catch(() => {});
    return next;
  }
}

function copy(r: ServiceRecord): ServiceRecord {
  return { ...r, links: r.links.map((l) => ({ ...l })) };
}

function parseRecord(value: unknown, kinds: readonly string[] | undefined): ServiceRecord {
  const o = check.object(value, 'a service');
  const name = validateServiceName(check.string(o.name, 'name'));
  const kind = check.string(o.kind, 'kind');
  if (kinds && !kinds.includes(kind)) throw new Error(`kind: ${JSON.stringify(kind)} is none of ${kinds.join(', ')}`);
  const memory = o.memory === undefined ? undefined : check.number(o.memory, 'memory');
  const exposedPort = o.exposedPort === undefined ? undefined : check.number(o.exposedPort, 'exposedPort');
  const exposedHost = check.optionalString(o.exposedHost, 'exposedHost');
  if (exposedHost !== undefined && !isIP(exposedHost)) throw new Error(`exposedHost: ${JSON.stringify(exposedHost)} is no IP address`);
  if (exposedPort !== undefined && !(Number.isInteger(exposedPort) && exposedPort >= 1 && exposedPort <= 65535)) throw new Error(`exposedPort: ${exposedPort} is no TCP port (1-65535)`);
  const createdByKey = check.optionalString(o.createdByKey, 'createdByKey');
  const backupSchedule = check.optionalString(o.backupSchedule, 'backupSchedule');
  const nodeId = check.optionalString(o.nodeId, 'nodeId');
  return {
    kind,
    name,
    id: check.string(o.id, 'id'),
    image: check.string(o.image, 'image'),
    ...(memory !== undefined ? { memory } : {}),
    createdAt: check.string(o.createdAt, 'createdAt'),
    createdBy: check.string(o.createdBy, 'createdBy'),
    ...(createdByKey ? { createdByKey } : {}),
    links: check.array(o.links, 'links').map((l) => {
      const link = check.object(l, 'a link');
      const app = check.string(link.app, 'link app');
      if (!isValidAppName(app)) throw new Error(`link app: ${JSON.stringify(app)} is no app name`);
      const alias = check.string(link.alias, 'link alias');
      validateConfigKey(`${alias}_URL`);
      return { app, alias };
    }),
    ...(exposedPort !== undefined ? { exposedPort } : {}),
    ...(exposedHost !== undefined ? { exposedHost } : {}),
    ...(backupSchedule ? { backupSchedule } : {}),
    ...(nodeId ? { nodeId } : {}),
  };
}
