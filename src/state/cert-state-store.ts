// The certificate settings and history kept in state/certs.json: which apps opted out of
// automatic certificates (certs:auto APP off), and per domain the last order attempts, so
// backoff and `certs:report` survive a restart. Restored entry by entry: a bad one is quarantined.
import { validateAppName } from '../app-name.ts';
import { check, JsonDocument } from './json-document.ts';

export interface DomainAttempts {
  /** Failed orders in a row since the last success. */
  failures: number;
  lastAttemptAt?: string;
  lastSuccessAt?: string;
  /** The last failure's message; cleared by a success. */
  lastError?: string;
  /** Earliest time of the next attempt after a failure. */
  nextAttemptAt?: string;
  /** The challenge type that validated the last certificate. */
  challenge?: string;
}

interface CertState {
  autoOff: string[];
  domains: Record<string, DomainAttempts>;
}

export class CertStateStore {
  readonly #doc: JsonDocument<CertState>;
  #state: CertState = { autoOff: [], domains: {} };

  constructor(file: string) {
    this.#doc = new JsonDocument(file, {
      schema: 1,
      empty: () => ({ autoOff: [], domains: {} }),
      parse: (raw, entries) => ({
        autoOff: entries.array(raw.autoOff, 'autoOff', 'app', (a) => validateAppName(check.string(a, 'an app name'))),
        domains: entries.object(raw.domains, 'domains', 'domain', parseAttempts),
      }),
    });
  }

  /** Reads the document; an entry that cannot be read is quarantined (reported in the log), the others load. */
  async load(): Promise<void> {
    this.#state = (await this.#doc.restore()).value;
  }

  isAuto(app: string): boolean {
    return !this.#state.autoOff.includes(app);
  }

  async setAuto(app: string, on: boolean): Promise<void> {
    const autoOff = this.#state.autoOff.filter((a) => a !== app);
    if (!on) autoOff.push(app);
    await this.#write({ ...this.#state, autoOff: autoOff.sort() });
  }

  attempts(domain: string): DomainAttempts {
    return this.#state.domains[domain] ?? { failures: 0 };
  }

  async setAttempts(domain: string, attempts: DomainAttempts): Promise<void> {
    await this.#write({ ...this.#state, domains: { ...this.#state.domains, [domain]: attempts } });
  }

  /** Carries an app's settings over to its new name (apps:rename). */
  async renameApp(from: string, to: string): Promise<void> {
    if (!this.#state.autoOff.includes(from)) return;
    await this.#write({ ...this.#state, autoOff: [...this.#state.autoOff.filter((a) => a !== from), to].sort() });
  }

  /** Drops an app's settings (the app is destroyed). */
  async forgetApp(app: string): Promise<void> {
    if (!this.#state.autoOff.includes(app)) return;
    await this.#write({ ...this.#state, autoOff: this.#state.autoOff.filter((a) => a !== app) });
  }

  async #write(next: CertState): Promise<void> {
    this.#state = next;
    await this.#doc.write(next);
  }
}

function parseAttempts(value: unknown): DomainAttempts {
  const o = check.object(value, 'the attempts');
  const entry: DomainAttempts = { failures: check.number(o.failures, 'failures') };
  for (const key of ['lastAttemptAt', 'lastSuccessAt', 'lastError', 'nextAttemptAt', 'challenge'] as const) {
    const v = check.optionalString(o[key], key);
    if (v !== undefined) entry[key] = v;
  }
  return entry;
}
