// Automatic HTTPS: decides which certificate each app domain is served with (a custom one given
// with certs:add, else one obtained from the ACME directory), keeps the SNI cache in step, and
// decides when each domain is due; the renewal scheduler runs one independent loop per domain,
// so a failing domain never holds up another. Every order passes the order budget: a cap per app
// per hour, and the whole account's pause after the CA answers rate-limited.
import fs from 'node:fs/promises';
import type { SecureContext } from 'node:tls';
import type { Config } from '../../config.ts';
import { DEFAULT_MAX_APP_ACME_ORDERS } from '../../domain-caps.ts';
import { qualifiesForAcme } from '../../domain-name.ts';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { CertStateStore, type AccountRateLimit, type DomainAttempts } from '../../state/cert-state-store.ts';
import type { DomainConflict, DomainStore } from '../../state/domain-store.ts';
import { AcmeChallenges } from './acme-challenges.ts';
import { AcmeIssuer, AcmeRateLimited, type Issued, type OrderGate } from './acme-issuer.ts';
import { covers, isCurrent, parseCertificateBundle, splitPem, type CertificateBundle } from './certificate.ts';
import { CertificateStore } from './certificate-store.ts';
import { OrderBudget, OrderDeferred, type AppOrdersReport } from './order-budget.ts';
import { DEFAULT_RENEWAL_POLICY, type RenewalPolicy } from './renewal-schedule.ts';
import { RenewalScheduler } from './renewal-scheduler.ts';
import { handshakeContext, SniCache, type CertificateSource } from './sni-cache.ts';

/** One order (all its requests and polling) gets this long before it counts as failed. */
export const ATTEMPT_TIMEOUT_MS = 5 * 60 * 1000;
/** Everything is looked at again this often, so nothing depends on a missed event. */
const RESYNC_INTERVAL_MS = 10 * 60 * 1000;

/** What orders certificates; AcmeIssuer in the daemon. */
export interface Issuer {
  readonly directory: string;
  /** Calls `beforeOrder` before each new order it places, and stops when it rejects; throws AcmeRateLimited on a rate-limited answer. */
  issue(domain: string, beforeOrder: OrderGate): Promise<Issued>;
}

export interface CertificateManagerOptions {
  config: Pick<Config, 'acmeDirectory' | 'acmeEmail' | 'acmeCaFile'>;
  /** When certificates renew and failed orders retry. Default: DEFAULT_RENEWAL_POLICY (a third of the lifetime left; 1 min doubling up to 6 h). */
  renewal?: RenewalPolicy;
  /** The data dir's certs/ folder. */
  certsDir: string;
  /** state/certs.json. */
  stateFile: string;
  apps: { list(): ReadonlyArray<{ name: string }> };
  domains: DomainStore;
  /**
   * Host names berth serves itself (berth.DOMAIN, its dashboard), each with the name its orders
   * count under (no app may bear it); they get automatic certificates as an app's domains do.
   */
  ownHosts?: () => ReadonlyArray<{ name: string; hostname: string }>;
  /** Default: an AcmeIssuer for the configured directory (when --acme-email is set). */
  issuer?: Issuer;
  /** ACME orders per app per hour (--max-app-acme-orders). Default: DEFAULT_MAX_APP_ACME_ORDERS. */
  maxOrdersPerHour?: number;
  /** The clock of the order budget and the schedule (epoch ms). Default: Date.now. */
  now?: () => number;
}

/** An app's caps and the account's state, for certs:report. */
export interface AppLimitsReport {
  domains: { used: number; cap: number };
  orders: AppOrdersReport;
  /** The ACME account's pause after a rate-limited answer, while it lasts. */
  accountPause: AccountRateLimit | null;
  /** Names reserved for this app that another app holds, or that this app holds for another. */
  conflicts: DomainConflict[];
}

export interface DomainCertificateReport {
  domain: string;
  /** The certificate served for the domain now, if any. */
  certificate: {
    source: CertificateSource;
    issuer: string;
    names: readonly string[];
    notBefore: string;
    notAfter: string;
    serial: string;
  } | null;
  /** `on`, or why berth does not order certificates for this domain. */
  acme: string;
  /** When renewal starts (ACME certificates only). */
  renewAt: string | null;
  attempts: DomainAttempts;
  /** An order for this domain is running now. */
  ordering: boolean;
  /** Why its next order waits beyond its own schedule (the account's pause, the app's cap), if it does. */
  waiting: string | null;
}

export class CertificateManager {
  readonly cache = new SniCache();
  readonly challenges = new AcmeChallenges();
  readonly #options: CertificateManagerOptions;
  readonly #store: CertificateStore;
  readonly #state: CertStateStore;
  readonly #issuer: Issuer | undefined;
  readonly #renewal: RenewalPolicy;
  readonly #budget: OrderBudget;
  readonly #now: () => number;
  /** ACME certificates by domain, as loaded from disk or just obtained. */
  readonly #managed = new Map<string, CertificateBundle>();
  /** Domains whose file was read once already (present or not). */
  readonly #looked = new Set<string>();
  /** Custom certificates by app. */
  readonly #custom = new Map<string, CertificateBundle>();
  readonly #scheduler: RenewalScheduler;
  /** Domain → app, for every domain that berth keeps a certificate for. */
  #desired = new Map<string, string>();
  #syncing: Promise<void> | undefined;
  #syncAgain = false;
  /** load() has run: sync() may fill the cache. */
  #loaded = false;
  /** start() has run: sync() may schedule orders. */
  #started = false;
  #scheduledOnce = false;
  #stopped = false;
  #resync: NodeJS.Timeout | undefined;

  constructor(options: CertificateManagerOptions) {
    this.#options = options;
    this.#store = new CertificateStore(options.certsDir);
    this.#state = new CertStateStore(options.stateFile);
    this.#renewal = options.renewal ?? DEFAULT_RENEWAL_POLICY;
    this.#now = options.now ?? Date.now;
    const { config } = options;
    this.#issuer =
      options.issuer ??
      (config.acmeEmail
        ? new AcmeIssuer({
            directory: config.acmeDirectory,
            email: config.acmeEmail,
            caFile: config.acmeCaFile || undefined,
            accountFile: this.#store.accountFile(config.acmeDirectory),
            challenges: this.challenges,
          })
        : undefined);
    this.#budget = new OrderBudget({ state: this.#state, directory: this.directory, maxPerHour: options.maxOrdersPerHour ?? DEFAULT_MAX_APP_ACME_ORDERS, now: this.#now });
    this.#scheduler = new RenewalScheduler({
      now: this.#now,
      dueAt: (domain) => this.#dueAt(domain),
      run: (domain) => this.#order(domain),
      settled: () => void this.sync(),
    });
  }

  /** Whether certificates are ordered at all (--acme-email is set). */
  get acmeEnabled(): boolean {
    return this.#issuer !== undefined;
  }

  get directory(): string {
    return this.#issuer?.directory ?? this.#options.config.acmeDirectory;
  }

  /** Loads state and certificates from disk into the SNI cache; no order starts before start(). */
  async load(): Promise<void> {
    await checkCaFile(this.#options.config.acmeCaFile);
    await this.#state.load();
    for (const app of await this.#store.customApps()) {
      const bundle = await this.#store.readCustom(app);
      if (bundle) this.#custom.set(app, bundle);
    }
    this.#loaded = true;
    await this.sync();
  }

  /** Starts ordering and renewing in the background; call it once the listeners answer challenges. */
  async start(): Promise<void> {
    if (!this.#loaded) await this.load();
    this.#started = true;
    await this.sync();
    this.#resync = setInterval(() => void this.sync(), RESYNC_INTERVAL_MS).unref();
    log.info('certificates_started', { acme: this.acmeEnabled, directory: this.acmeEnabled ? this.directory : undefined, domains: this.#desired.size, custom: this.#custom.size });
  }

  /** Stops scheduling; an order in flight finishes on its own, and its result is kept on disk. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#resync);
    this.#scheduler.stop();
  }

  /** Resolves once no order is in flight (after stop(), once the last one has stored its result). */
  idle(): Promise<void> {
    return this.#scheduler.idle();
  }

  /**
   * Looks at every app's domains again: which certificate each is served with, and which need an
   * order. Call it after anything that changes apps, domains or settings; calls made while one
   * runs are folded into one more run.
   */
  sync(): Promise<void> {
    if (!this.#loaded) return Promise.resolve();
    if (this.#syncing) {
      this.#syncAgain = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#syncAgain = false;
        await this.#syncOnce();
      } while (this.#syncAgain);
    })()
      .catch((e) => log.error('certificates_sync_failed', { error: e }))
      .finally(() => {
        this.#syncing = undefined;
      });
    return this.#syncing;
  }

  /** The context for a TLS handshake: never waits, never touches the network. */
  secureContext(servername: string, acmeTls: boolean): SecureContext | undefined {
    return handshakeContext(this.cache, this.challenges, servername, acmeTls);
  }

  /** Whether `hostname` is served over HTTPS now (so its HTTP requests are redirected). */
  hasCertificate(hostname: string): boolean {
    return this.cache.lookup(hostname) !== undefined;
  }

  isAuto(app: string): boolean {
    return this.#state.isAuto(app);
  }

  async setAuto(app: string, on: boolean): Promise<void> {
    await this.#state.setAuto(app, on);
    await this.sync();
  }

  /**
   * Serves `app` with a certificate of its own instead of ACME ones. Refused when the key does
   * not match, the certificate is not valid now, or it does not cover every domain of the app.
   */
  async addCustom(app: string, certText: string, keyText: string): Promise<CertificateBundle> {
    const bundle = parseCertificateBundle(certText, keyText);
    const now = Date.now();
    if (bundle.info.notAfter.getTime() <= now) {
      throw new UserError('certificate_expired', `the certificate expired on ${bundle.info.notAfter.toISOString()}`, { hint: 'renew it with its issuer, then add the new one' });
    }
    if (bundle.info.notBefore.getTime() > now) {
      throw new UserError('certificate_not_yet_valid', `the certificate is valid only from ${bundle.info.notBefore.toISOString()}`, { hint: "check this server's clock, or add it once it is valid" });
    }
    const names = this.#options.domains.hostnames(app);
    const uncovered = names.filter((n) => !covers(bundle, n));
    if (uncovered.length > 0) {
      throw new UserError('certificate_does_not_cover', `the certificate does not cover ${uncovered.join(', ')} (it is for ${bundle.info.names.join(', ') || 'no DNS name'})`, {
        hint: `give a certificate for every domain of ${app}, or remove the others first with \`domains:remove ${app} DOMAIN\``,
      });
    }
    await this.#store.writeCustom(app, bundle);
    this.#custom.set(app, bundle);
    await this.sync();
    log.info('certificate_custom_added', { app, names: bundle.info.names, notAfter: bundle.info.notAfter.toISOString(), issuer: bundle.info.issuer });
    return bundle;
  }

  async removeCustom(app: string): Promise<void> {
    if (!this.#custom.has(app)) {
      throw new UserError('no_custom_certificate', `${app} has no certificate added with certs:add`, { hint: `see its certificates with \`certs:report ${app}\`` });
    }
    await this.#store.removeCustom(app);
    this.#custom.delete(app);
    await this.sync();
    log.info('certificate_custom_removed', { app });
  }

  /** Carries a renamed app's custom certificate and settings over, then fetches what the new names need. */
  async renameApp(from: string, to: string): Promise<void> {
    const custom = this.#custom.get(from);
    if (custom) {
      await this.#store.renameCustom(from, to);
      this.#custom.delete(from);
      this.#custom.set(to, custom);
    }
    await this.#state.renameApp(from, to);
    await this.sync();
  }

  /** Forgets a destroyed app's custom certificate and settings. */
  async forgetApp(app: string): Promise<void> {
    if (this.#custom.delete(app)) await this.#store.removeCustom(app);
    await this.#state.forgetApp(app);
    await this.sync();
  }

  customCertificate(app: string): CertificateBundle | undefined {
    return this.#custom.get(app);
  }

  /** The certificate state of each domain of an app, for certs:report. */
  report(app: string): DomainCertificateReport[] {
    const auto = this.#state.isAuto(app);
    const custom = this.#custom.get(app);
    return this.#options.domains.hostnames(app).map((domain) => {
      const served = this.cache.lookup(domain);
      const managed = this.#managed.get(domain);
      const acme = custom && covers(custom, domain)
        ? 'off: a custom certificate is served'
        : !auto
          ? `off: certs:auto ${app} off`
          : !qualifiesForAcme(domain)
            ? 'off: no public CA certifies this name'
            : !this.acmeEnabled
              ? 'off: berth serve has no --acme-email'
              : 'on';
      return {
        domain,
        certificate: served
          ? {
              source: served.source,
              issuer: served.bundle.info.issuer,
              names: served.bundle.info.names,
              notBefore: served.bundle.info.notBefore.toISOString(),
              notAfter: served.bundle.info.notAfter.toISOString(),
              serial: served.bundle.info.serial,
            }
          : null,
        acme,
        renewAt: acme === 'on' && managed ? new Date(this.#renewal.renewAt(managed.info)).toISOString() : null,
        attempts: this.#state.attempts(domain),
        ordering: this.#scheduler.isRunning(domain),
        waiting: acme === 'on' ? (this.#budget.waitReason(app) ?? null) : null,
      };
    });
  }

  /** The app's domains and orders against their caps, and the account's pause, for certs:report. */
  limits(app: string): AppLimitsReport {
    const domains = this.#options.domains;
    return {
      domains: { used: domains.hostnames(app).length, cap: domains.maxDomains },
      orders: this.#budget.report(app),
      accountPause: this.#budget.pause() ?? null,
      conflicts: domains.conflicts().filter((c) => c.holder === app || c.reservedFor === app),
    };
  }

  async #syncOnce(): Promise<void> {
    const previous = this.#desired;
    const desired = new Map<string, string>();
    const served = new Map<string, { bundle: CertificateBundle; source: CertificateSource }>();
    for (const { name: app } of this.#options.apps.list()) {
      const custom = this.#custom.get(app);
      const auto = this.#state.isAuto(app);
      for (const domain of this.#options.domains.hostnames(app)) {
        if (custom && covers(custom, domain)) {
          served.set(domain, { bundle: custom, source: 'custom' });
          continue;
        }
        if (!auto || !qualifiesForAcme(domain)) continue;
        const managed = await this.#loadManaged(domain);
        if (managed) served.set(domain, { bundle: managed, source: 'acme' });
        if (this.#issuer) desired.set(domain, app);
      }
    }
    for (const { name, hostname } of this.#options.ownHosts?.() ?? []) {
      if (!qualifiesForAcme(hostname)) continue;
      const managed = await this.#loadManaged(hostname);
      if (managed) served.set(hostname, { bundle: managed, source: 'acme' });
      if (this.#issuer) desired.set(hostname, name);
    }
    if (this.#stopped) return;
    this.cache.replace(served);
    if (!this.#started) return;
    const first = !this.#scheduledOnce;
    this.#scheduledOnce = true;
    this.#desired = desired;
    this.#scheduler.retain(desired.keys());
    for (const domain of desired.keys()) {
      // A domain that comes (back) while running is tried at once, whatever an earlier failure
      // left; at start-up the stored backoff stands, so restarts do not hammer the CA.
      if (!first && !previous.has(domain) && this.#state.attempts(domain).failures > 0) {
        await this.#state.setAttempts(domain, { ...this.#state.attempts(domain), failures: 0 });
      }
      this.#scheduler.schedule(domain);
    }
  }

  async #loadManaged(domain: string): Promise<CertificateBundle | undefined> {
    if (!this.#looked.has(domain)) {
      this.#looked.add(domain);
      const bundle = await this.#store.readManaged(this.directory, domain).catch((e) => {
        log.error('certificate_read_failed', { domain, error: e });
        return undefined;
      });
      if (bundle && covers(bundle, domain)) this.#managed.set(domain, bundle);
    }
    return this.#managed.get(domain);
  }

  /**
   * When the next order for a domain should start: now without a usable certificate, at renewal
   * time with one, never before its backoff ends, its app's hour has room, or the account's pause ends.
   */
  #dueAt(domain: string): number {
    const managed = this.#managed.get(domain);
    let due = managed && isCurrent(managed) ? this.#renewal.renewAt(managed.info) : this.#now();
    const attempts = this.#state.attempts(domain);
    if (attempts.failures > 0 && attempts.nextAttemptAt) due = Math.max(due, Date.parse(attempts.nextAttemptAt));
    const app = this.#desired.get(domain);
    return app === undefined ? due : Math.max(due, this.#budget.nextOrderAt(app));
  }

  /** One order for a domain; its result (certificate, or failure and backoff) is stored, never thrown. */
  async #order(domain: string): Promise<void> {
    const issuer = this.#issuer;
    if (!issuer) return;
    const renewing = this.#managed.has(domain);
    const app = this.#desired.get(domain);
    if (app === undefined) return;
    log.info('certificate_order_started', { domain, app, renewing });
    const started = this.#now();
    const before = this.#state.attempts(domain);
    try {
      const issued = await withTimeout(issuer.issue(domain, () => this.#budget.take(app, domain)), ATTEMPT_TIMEOUT_MS, `the order did not finish within ${ATTEMPT_TIMEOUT_MS / 1000} s`);
      const bundle = parseCertificateBundle(issued.certPem, issued.keyPem);
      if (!covers(bundle, domain)) throw new Error(`the CA issued a certificate for ${bundle.info.names.join(', ')}, not ${domain}`);
      await this.#store.writeManaged(issuer.directory, domain, bundle);
      this.#managed.set(domain, bundle);
      this.#looked.add(domain);
      await this.#state.setAttempts(domain, {
        failures: 0,
        lastAttemptAt: new Date(started).toISOString(),
        lastSuccessAt: new Date(this.#now()).toISOString(),
        challenge: issued.challenge,
      });
      log.info(renewing ? 'certificate_renewed' : 'certificate_obtained', {
        domain,
        issuer: bundle.info.issuer,
        notAfter: bundle.info.notAfter.toISOString(),
        challenge: issued.challenge,
        ms: this.#now() - started,
      });
    } catch (e) {
      if (e instanceof OrderDeferred) {
        // Not the domain's failure: it goes out once the cap or the pause allows (see #dueAt).
        log.info('certificate_order_deferred', { domain, app, until: new Date(e.until).toISOString(), reason: e.message });
        return;
      }
      if (e instanceof AcmeRateLimited) {
        const pause = await this.#budget.rateLimited(domain, e.detail, e.retryAfterMs);
        await this.#state.setAttempts(domain, {
          ...before,
          lastAttemptAt: new Date(started).toISOString(),
          lastError: `${e.message}; every order of the ACME account waits until ${pause.until}`,
          nextAttemptAt: pause.until,
        });
        log.warn('acme_rate_limited', { domain, app, detail: e.detail, retryAfterMs: e.retryAfterMs, pausedUntil: pause.until, directory: issuer.directory });
        return;
      }
      const failures = before.failures + 1;
      const delay = this.#renewal.retryDelay(failures);
      const message = e instanceof Error ? e.message : String(e);
      await this.#state.setAttempts(domain, {
        ...before,
        failures,
        lastAttemptAt: new Date(started).toISOString(),
        lastError: message,
        nextAttemptAt: new Date(this.#now() + delay).toISOString(),
      });
      log.warn('certificate_order_failed', { domain, renewing, failures, retryInMs: delay, error: message });
    }
  }
}

async function checkCaFile(file: string): Promise<void> {
  if (!file) return;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new UserError('acme_ca_file_unreadable', `--acme-ca-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: 'give a readable PEM file of CA certificates', cause: e });
  }
  if (splitPem(text).certs.length === 0) {
    throw new UserError('acme_ca_file_invalid', `--acme-ca-file ${file}: no PEM certificate in it`, { hint: 'give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)' });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
