// Orders certificates from one ACME directory with acme-client (loaded on first use: it takes
// ~220 ms to require). One account per directory, its key kept in the data dir. HTTP-01 is
// tried first; when its validation fails (port 80 blocked, say) the same attempt orders again
// with TLS-ALPN-01. Every new order passes the caller's gate first, and a rate-limited answer
// from the CA ends the attempt as AcmeRateLimited, which pauses the whole account.
import { generateKeyPair } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { promisify } from 'node:util';
import type { Authorization, Client } from 'acme-client';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { writeFileAtomic } from '../../state/atomic-file.ts';
import { AcmeChallenges } from './acme-challenges.ts';

export type ChallengeType = 'http-01' | 'tls-alpn-01';

export interface AcmeIssuerOptions {
  directory: string;
  email: string;
  /** PEM file of extra CAs to trust for the directory's TLS certificate. */
  caFile?: string | undefined;
  /** Where the account key and URL are kept. */
  accountFile: string;
  challenges: AcmeChallenges;
  /** Challenge types in the order they are tried. Default: http-01, then tls-alpn-01. */
  types?: readonly ChallengeType[];
}

export interface Issued {
  certPem: string;
  keyPem: string;
  challenge: ChallengeType;
}

/** Each ACME request gets this long; a CA that does not answer fails the attempt instead of hanging it. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;

/** The problem type of RFC 8555 section 6.7 a CA answers when a rate limit is hit. */
export const RATE_LIMITED_PROBLEM = 'urn:ietf:params:acme:error:rateLimited';

/**
 * The CA answered rate-limited (HTTP 429, or the rateLimited problem type): no order of the
 * account should go out before `retryAfterMs` (from Retry-After; undefined when the CA gave none).
 */
export class AcmeRateLimited extends Error {
  readonly detail: string;
  readonly retryAfterMs: number | undefined;
  constructor(detail: string, retryAfterMs: number | undefined) {
    super(`the CA answered rate-limited: ${detail}`);
    this.name = 'AcmeRateLimited';
    this.detail = detail;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Called before each new order an attempt places; it rejects to stop the attempt there (a cap, a paused account). */
export type OrderGate = () => Promise<void>;

type AcmeModule = typeof import('acme-client');

interface StoredAccount {
  directory: string;
  email: string;
  url: string | null;
  key: string;
  createdAt: string;
}

export class AcmeIssuer {
  readonly #options: AcmeIssuerOptions;
  readonly #types: readonly ChallengeType[];
  /** The registered client, shared by concurrent orders; dropped after any failure, so the next attempt registers again. */
  #client: Promise<Client> | undefined;

  constructor(options: AcmeIssuerOptions) {
    this.#options = options;
    this.#types = options.types ?? ['http-01', 'tls-alpn-01'];
  }

  get directory(): string {
    return this.#options.directory;
  }

  /**
   * Obtains a certificate (chain PEM) and its new key for one domain, or throws with every
   * challenge's reason. `beforeOrder` runs before each new order; its rejection ends the attempt.
   */
  async issue(domain: string, beforeOrder: OrderGate): Promise<Issued> {
    const client = this.#registered();
    const failures: string[] = [];
    try {
      for (const type of this.#types) {
        try {
          return await this.#order(await client, domain, type, beforeOrder);
        } catch (e) {
          if (!(e instanceof ChallengeFailed)) throw e;
          failures.push(e.message);
          log.warn('acme_challenge_failed', { domain, challenge: type, error: e.message });
        }
      }
    } catch (e) {
      if (this.#client === client) this.#client = undefined;
      throw e;
    }
    if (this.#client === client) this.#client = undefined;
    throw new Error(failures.join('; '));
  }

  #registered(): Promise<Client> {
    this.#client ??= this.#register();
    return this.#client;
  }

  async #register(): Promise<Client> {
    const acme = await loadAcme(this.#options.caFile);
    const account = await this.#account();
    const client = new acme.Client({
      directoryUrl: this.#options.directory,
      accountKey: account.key,
      // Polling for a validation or an order: 0.5 s, doubling to 5 s, about 45 s in all.
      backoffAttempts: 12,
      backoffMin: 500,
      backoffMax: 5_000,
    });
    watchRateLimits(client);
    // newAccount with a known key returns the existing account, so this also recovers an account
    // the CA forgot (a CA reset, or a test CA restarted); acme-client then updates its contact.
    await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${this.#options.email}`] });
    const url = client.getAccountUrl();
    if (url !== account.url || account.email !== this.#options.email) {
      await saveAccount(this.#options.accountFile, { ...account, url, email: this.#options.email });
      log.info('acme_account_registered', { directory: this.#options.directory, email: this.#options.email, url });
    }
    return client;
  }

  async #account(): Promise<StoredAccount> {
    try {
      const stored = JSON.parse(await fs.readFile(this.#options.accountFile, 'utf8')) as StoredAccount;
      if (typeof stored.key === 'string' && stored.key.includes('PRIVATE KEY')) return stored;
      log.error('acme_account_file_unusable', { file: this.#options.accountFile });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.error('acme_account_file_unusable', { file: this.#options.accountFile, error: e });
    }
    const key = await newKeyPem();
    const account: StoredAccount = { directory: this.#options.directory, email: this.#options.email, url: null, key, createdAt: new Date().toISOString() };
    await saveAccount(this.#options.accountFile, account);
    return account;
  }

  async #order(client: Client, domain: string, type: ChallengeType, beforeOrder: OrderGate): Promise<Issued> {
    const acme = await loadAcme(this.#options.caFile);
    await beforeOrder();
    const order = await client.createOrder({ identifiers: [{ type: 'dns', value: domain }] });
    const authorizations = await client.getAuthorizations(order);
    for (const authz of authorizations) {
      if (authz.status === 'valid') continue; // the CA remembers an earlier validation
      await this.#solve(acme, client, authz, type);
    }
    const keyPem = await newKeyPem();
    const [, csr] = await acme.crypto.createCsr({ altNames: [domain] }, keyPem);
    const finalized = await client.finalizeOrder(order, csr);
    const certPem = await client.getCertificate(finalized);
    return { certPem, keyPem, challenge: type };
  }

  async #solve(acme: AcmeModule, client: Client, authz: Authorization, type: ChallengeType): Promise<void> {
    const domain = authz.identifier.value;
    const challenge = authz.challenges.find((c) => c.type === type);
    if (!challenge) throw new ChallengeFailed(`${type}: the CA offers no such challenge for ${domain}`);
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    const challenges = this.#options.challenges;
    if (type === 'http-01') {
      challenges.setHttp(challenge.token, keyAuthorization);
    } else {
      const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await newKeyPem());
      challenges.setAlpn(domain, { certPem: cert.toString(), keyPem: key.toString() });
    }
    try {
      await client.completeChallenge(challenge);
      await client.waitForValidStatus(challenge);
    } catch (e) {
      if (e instanceof AcmeRateLimited) throw e;
      throw new ChallengeFailed(`${type}: ${(e as Error).message}`, { cause: e });
    } finally {
      if (type === 'http-01') challenges.deleteHttp(challenge.token);
      else challenges.deleteAlpn(domain);
    }
  }
}

/** The CA did not validate a challenge: another challenge type may still work. */
class ChallengeFailed extends Error {}

let loaded: Promise<AcmeModule> | undefined;
let trustedCaFile: string | undefined;

interface AcmeResponse {
  status: number;
  headers: Record<string, unknown>;
  data: unknown;
}

/**
 * Turns every rate-limited answer to this client's requests into an AcmeRateLimited error that
 * carries the CA's Retry-After, which acme-client would otherwise drop (it throws the problem's
 * detail alone). Its HTTP client is not public API: a version that changes it fails the order
 * loudly here rather than losing rate limits silently.
 */
function watchRateLimits(client: Client): void {
  const http = (client as unknown as { http?: { request?: (...args: unknown[]) => Promise<AcmeResponse> } }).http;
  if (typeof http?.request !== 'function') throw new Error('acme-client has no http.request to watch for rate limits: check it after an upgrade of acme-client');
  const request = http.request.bind(http);
  http.request = async (...args: unknown[]) => {
    const response = await request(...args);
    const problem = (response.data ?? {}) as { type?: unknown; detail?: unknown };
    if (response.status === 429 || problem.type === RATE_LIMITED_PROBLEM) {
      const detail = typeof problem.detail === 'string' && problem.detail !== '' ? problem.detail : `HTTP ${response.status}`;
      throw new AcmeRateLimited(detail, retryAfterMs(response.headers['retry-after']));
    }
    return response;
  };
}

/** Retry-After as seconds or an HTTP date (RFC 9110), in ms from now; undefined when absent or unreadable. */
export function retryAfterMs(header: unknown, now = Date.now()): number | undefined {
  if (typeof header !== 'string' || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Loads acme-client once and sets up its HTTP client: a timeout per request, no retries of its
 * own (berth's scheduler retries with backoff; acme-client's would retry a rate-limited answer,
 * sleeping out its Retry-After, hours maybe, inside the order), and the extra CA when one is given.
 */
async function loadAcme(caFile: string | undefined): Promise<AcmeModule> {
  if (loaded && trustedCaFile !== caFile) throw new Error('acme-client is already set up with another CA file');
  trustedCaFile = caFile;
  loaded ??= (async () => {
    const acme = (await import('acme-client')).default as unknown as AcmeModule;
    acme.setLogger((message: string) => log.debug('acme_client', { message }));
    const defaults = acme.axios.defaults as typeof acme.axios.defaults & { acmeSettings: { retryMaxAttempts: number; retryDefaultDelay: number } };
    defaults.timeout = ACME_REQUEST_TIMEOUT_MS;
    defaults.acmeSettings.retryMaxAttempts = 0;
    if (caFile) {
      let pem: string;
      try {
        pem = await fs.readFile(caFile, 'utf8');
      } catch (e) {
        throw new UserError('acme_ca_file_unreadable', `--acme-ca-file ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
      }
      defaults.httpsAgent = new https.Agent({ ca: [...rootCertificates, pem], keepAlive: true });
    } else {
      defaults.httpsAgent = new https.Agent({ keepAlive: true });
    }
    return acme;
  })();
  loaded.catch(() => {
    loaded = undefined;
  });
  return loaded;
}

/** A new ECDSA P-256 key: small certificates and cheap handshakes. */
async function newKeyPem(): Promise<string> {
  const { privateKey } = await promisify(generateKeyPair)('ec', { namedCurve: 'P-256' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function saveAccount(file: string, account: StoredAccount): Promise<void> {
  return writeFileAtomic(file, JSON.stringify(account, null, 2) + '\n', 0o600);
}
