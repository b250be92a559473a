// The certificate settings and history kept in state/certs.json: which apps opted out of
// automatic certificates (certs:auto APP off), and per domain the last order attempts, so
// backoff and `certs:report` survive a restart.
import { validateAppName } from '../app-name.ts';
import { log } from '../log.ts';
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
      parse: (raw) => {
        const autoOff = check.array(raw.autoOff, 'autoOff').map((a) => validateAppName(check.string(a, 'autoOff[]')));
        const domains: Record<string, DomainAttempts> = {};
        for (const [name, value] of Object.entries(check.object(raw.domains, 'domains'))) {
          const o = check.object(value, `domains.${name}`);
          const entry: DomainAttempts = { failures: check.number(o.failures, `domains.${name}.failures`) };
          for (const key of ['lastAttemptAt', 'lastSuccessAt', 'lastError', 'nextAttemptAt', 'challenge'] as const) {
            const v = check.optionalString(o[key], `domains.${name}.${key}`);
            if (v !== undefined) entry[key] = v;
          }
          domains[name] = entry;
        }
        return { autoOff, domains };
      },
    });
  }

  /** Reads the document; one that cannot be read is moved aside (history only: nothing is lost that matters). */
  async load(): Promise<void> {
    try {
      this.#state = await this.#doc.read();
    } catch (e) {
      const movedTo = await this.#doc.quarantine().catch(() => undefined);
      log.error('state_certs_quarantined', { file: this.#doc.file, movedTo, error: e });
      this.#state = { autoOff: [], domains: {} };
    }
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
