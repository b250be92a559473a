// Health checks from berth to a new container before it gets traffic: the `healthchecks` of an
// app's app.json in Dokku's format (https://dokku.com/docs/deployment/zero-downtime-deploys/),
// validated where they enter, and the probes themselves. An HTTP check is a GET to the
// container's address with the app's real Host header and `X-Forwarded-Proto: https`, as the
// proxy would send it; with no checks, berth connects over TCP to $PORT and then asks for `/` the
// same way, and any answer below 500 will do (an app that speaks no HTTP passes on the connection).
import http from 'node:http';
import net from 'node:net';
import { UserError } from '../errors.ts';
import { sleep } from '../sleep.ts';

/** Dokku's defaults (docker-container-healthchecker): 3 attempts, 5 s per attempt, 5 s between attempts, no initial delay, path `/`. */
export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_TIMEOUT_S = 5;
export const DEFAULT_WAIT_S = 5;
/** The checks with none in app.json: how long berth keeps trying to connect to $PORT, and how often. */
export const LISTEN_TIMEOUT_MS = 60_000;
export const LISTEN_INTERVAL_MS = 200;
/**
 * The default check's `GET /`: a 5xx is asked again this often, this many times, before the deploy
 * fails (an app may answer 503 while it connects to its database); an answer that takes longer than
 * the timeout, or no HTTP at all, passes on the TCP connection alone.
 */
export const ANSWER_ATTEMPTS = 20;
export const ANSWER_INTERVAL_MS = 500;
export const ANSWER_TIMEOUT_MS = 2_000;
/** An HTTP check reads at most this much of the body to look for `content`. */
export const MAX_BODY_BYTES = 1024 * 1024;

interface CheckTiming {
  /** Display name: the check's `name`, or one made from what it does. */
  name: string;
  attempts: number;
  /** Per attempt. */
  timeoutMs: number;
  /** Between attempts. */
  waitMs: number;
  /** Before the first attempt. */
  initialDelayMs: number;
  /** The port to probe; undefined: the web process's $PORT. */
  port: number | undefined;
}

/** GET `path`; passes on a 2xx or 3xx answer whose body contains `content` (when given). */
export interface HttpCheck extends CheckTiming {
  kind: 'http';
  path: string;
  content: string | undefined;
  headers: ReadonlyArray<readonly [string, string]>;
}

/** A TCP connection to the port is accepted. */
export interface ListeningCheck extends CheckTiming {
  kind: 'listening';
}

/** The container is still running, without a restart, `uptimeMs` after the checks began. */
export interface UptimeCheck extends CheckTiming {
  kind: 'uptime';
  uptimeMs: number;
}

/**
 * The default check of a web process, after `listening`: `GET /` with the app's real Host and
 * `X-Forwarded-Proto: https` answers with any status below 500 (a redirect or a 404 is an
 * answer). A port that speaks no HTTP (no answer in time, no HTTP in the reply, or the connection
 * closed unanswered) passes: the TCP connection was all there was to check.
 */
export interface AnsweringCheck extends CheckTiming {
  kind: 'answering';
}

export type HealthCheck = HttpCheck | ListeningCheck | UptimeCheck | AnsweringCheck;

/** Where and how to probe one new container. */
export interface ProbeTarget {
  /** The container's address on berth's network, and its $PORT (undefined: a process without one, such as a worker). */
  host: string;
  port: number | undefined;
  /** The app's real host name, sent as the Host header. */
  hostHeader: string;
  /** The container's state now; uptime checks use it to see that it is running and never restarted. */
  state?: () => Promise<{ running: boolean; restartCount: number }>;
}

export interface CheckAttempt {
  check: HealthCheck;
  attempt: number;
  ok: boolean;
  /** What was seen: `200 in 12 ms`, or why it failed. */
  detail: string;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** When the container started (ms since the epoch): uptime counts from it. Default: when the checks begin. */
  startedAt?: number;
  /** Told of every attempt, for deploy output. */
  onAttempt?: (attempt: CheckAttempt) => void;
}

/**
 * The startup checks of one process type from an app.json's text: Dokku's `healthchecks`
 * format. Returns [] when the file declares none for it. Throws a UserError that names the bad
 * field (`healthchecks.web[1].attempts`) and what it must be.
 */
export function parseHealthchecks(appJson: string, processType = 'web'): HealthCheck[] {
  return checksOf(healthchecksSection(appJson), processType);
}

/** The `healthchecks` object of an app.json as a release keeps it: process type → list of checks as written. */
export type HealthchecksSection = Record<string, unknown[]>;

/**
 * The `healthchecks` of an app.json's text, every process type's checks validated (the first
 * bad field throws, as parseHealthchecks does); undefined when it declares none.
 */
export function healthchecksSection(appJson: string): HealthchecksSection | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(appJson);
  } catch (e) {
    throw invalid(`app.json is not valid JSON: ${(e as Error).message}`, e);
  }
  if (!isObject(doc)) throw invalid('app.json must hold a JSON object');
  if (doc.healthchecks === undefined) return undefined;
  if (!isObject(doc.healthchecks)) throw invalid('app.json: healthchecks must be an object of process types, e.g. {"web": [...]}');
  const section: HealthchecksSection = {};
  for (const [type, list] of Object.entries(doc.healthchecks)) {
    if (!Array.isArray(list)) throw invalid(`app.json: healthchecks.${type} must be a list of checks`);
    section[type] = list;
    checksOf(section, type);
  }
  return section;
}

/** The startup checks of one process type from a validated section ([] when it has none). */
export function checksOf(section: HealthchecksSection | undefined, processType: string): HealthCheck[] {
  const list = section?.[processType];
  if (list === undefined) return [];
  const where = `healthchecks.${processType}`;
  if (!Array.isArray(list)) throw invalid(`app.json: ${where} must be a list of checks`);
  const checks: HealthCheck[] = [];
  list.forEach((entry, i) => {
    const check = parseCheck(entry, `${where}[${i}]`);
    if (check) checks.push(check);
  });
  return checks;
}

/**
 * The checks berth runs when app.json declares none: for a web process (`listening`), a TCP
 * connect to $PORT, then `GET /` answered below 500. Any other process has none before it starts
 * working: that it keeps running is what the probation after the swap watches.
 */
export function defaultHealthChecks(options: { listening: boolean }): HealthCheck[] {
  if (!options.listening) return [];
  const listening: ListeningCheck = {
    kind: 'listening',
    name: 'port listening',
    attempts: Math.ceil(LISTEN_TIMEOUT_MS / LISTEN_INTERVAL_MS),
    timeoutMs: 1000,
    waitMs: LISTEN_INTERVAL_MS,
    initialDelayMs: 0,
    port: undefined,
  };
  const answering: AnsweringCheck = { kind: 'answering', name: 'GET / answers', attempts: ANSWER_ATTEMPTS, timeoutMs: ANSWER_TIMEOUT_MS, waitMs: ANSWER_INTERVAL_MS, initialDelayMs: 0, port: undefined };
  return [listening, answering];
}

/** The container stays up, without a restart, `uptimeMs` after it started. */
export function uptimeCheck(uptimeMs: number): UptimeCheck {
  const ms = Math.max(0, uptimeMs);
  return { kind: 'uptime', name: `uptime ${formatSeconds(ms)}`, attempts: 1, timeoutMs: 0, waitMs: 0, initialDelayMs: 0, port: undefined, uptimeMs: ms };
}

/**
 * Runs the checks one after another against one container; resolves when all pass. Throws a
 * UserError (`health_check_failed`) naming the check and the last reason when one runs out of
 * attempts; an abort rejects with the signal's reason.
 */
export async function runHealthChecks(checks: readonly HealthCheck[], target: ProbeTarget, options: RunOptions = {}): Promise<void> {
  const started = options.startedAt ?? Date.now();
  for (const check of checks) {
    if (check.initialDelayMs > 0) await sleep(check.initialDelayMs, options.signal);
    let last = '';
    let passed = false;
    for (let attempt = 1; attempt <= check.attempts; attempt++) {
      options.signal?.throwIfAborted();
      const result = await probeOnce(check, target, started, options.signal);
      last = result.detail;
      options.onAttempt?.({ check, attempt, ok: result.ok, detail: result.detail });
      if (result.ok) {
        passed = true;
        break;
      }
      if (result.final) break;
      if (attempt < check.attempts && check.waitMs > 0) await sleep(check.waitMs, options.signal);
    }
    if (!passed) {
      throw new UserError('health_check_failed', `health check "${check.name}" failed after ${check.attempts} attempt${check.attempts === 1 ? '' : 's'}: ${last}`, {
        hint: hintFor(check),
      });
    }
  }
}

/** One attempt of one check. `final`: failing again cannot help (the container stopped). */
export async function probeOnce(check: HealthCheck, target: ProbeTarget, checksStarted = Date.now(), signal?: AbortSignal): Promise<{ ok: boolean; detail: string; final?: boolean }> {
  const port = check.port ?? target.port;
  if (port === undefined && check.kind !== 'uptime') {
    return { ok: false, detail: `this process has no $PORT: give the check a "port"`, final: true };
  }
  if (check.kind === 'listening') return connectOnce(target.host, port!, check.timeoutMs);
  if (check.kind === 'answering') return answerOnce(target.host, port!, target.hostHeader, check.timeoutMs);
  if (check.kind === 'uptime') {
    const remaining = checksStarted + check.uptimeMs - Date.now();
    if (remaining > 0) await sleep(remaining, signal);
    if (target.state) {
      const state = await target.state();
      if (!state.running) return { ok: false, detail: 'the container stopped', final: true };
      if (state.restartCount > 0) return { ok: false, detail: `the container restarted ${state.restartCount} time${state.restartCount === 1 ? '' : 's'}`, final: true };
    }
    const up = { ok: true, detail: `up for ${formatSeconds(Math.round((Date.now() - checksStarted) / 100) * 100)}` };
    if (port === undefined) return up;
    const connected = await connectOnce(target.host, port, 1000);
    return connected.ok ? up : { ...connected, final: true };
  }
  return httpOnce(check, target.host, port!, target.hostHeader);
}

// ---------------------------------------------------------------------------------------------

function parseCheck(entry: unknown, where: string): HealthCheck | undefined {
  if (!isObject(entry)) throw invalid(`app.json: ${where} must be an object`);
  const field = (name: string) => `${where}.${name}`;
  const type = optionalString(entry.type, field('type'));
  if (type !== undefined && !['startup', 'liveness', 'readiness'].includes(type)) {
    throw invalid(`app.json: ${field('type')} must be "startup", "liveness" or "readiness", not ${JSON.stringify(type)}`);
  }
  if (entry.command !== undefined) throw invalid(`app.json: ${field('command')}: command checks are not supported by berth; use an HTTP check (path) instead`);
  const scheme = optionalString(entry.scheme, field('scheme'));
  if (scheme !== undefined && scheme.toLowerCase() !== 'http') throw invalid(`app.json: ${field('scheme')} must be "http" (berth checks the container directly, before TLS)`);
  const path = optionalString(entry.path, field('path'));
  if (path !== undefined && !/^\/[\x21-\x7e]*$/.test(path)) throw invalid(`app.json: ${field('path')} must be a path starting with "/" without spaces, not ${JSON.stringify(path)}`);
  const content = optionalString(entry.content, field('content'));
  const attempts = optionalNumber(entry.attempts, field('attempts'), { integer: true, min: 1, max: 1000 }) ?? DEFAULT_ATTEMPTS;
  const timeout = optionalNumber(entry.timeout, field('timeout'), { min: 0.001, max: 3600 }) ?? DEFAULT_TIMEOUT_S;
  const wait = optionalNumber(entry.wait, field('wait'), { min: 0, max: 3600 }) ?? DEFAULT_WAIT_S;
  const initialDelay = optionalNumber(entry.initialDelay, field('initialDelay'), { min: 0, max: 3600 }) ?? 0;
  const port = optionalNumber(entry.port, field('port'), { integer: true, min: 1, max: 65535 });
  const uptime = optionalNumber(entry.uptime, field('uptime'), { min: 0, max: 3600 });
  const listening = entry.listening;
  if (listening !== undefined && typeof listening !== 'boolean') throw invalid(`app.json: ${field('listening')} must be true or false`);
  const name = optionalString(entry.name, field('name'));
  const headers = parseHeaders(entry.httpHeaders, field('httpHeaders'));
  if (content !== undefined && path === undefined) throw invalid(`app.json: ${field('content')} needs a path to check`);
  const kinds = [path !== undefined && 'path', uptime !== undefined && uptime > 0 && 'uptime', listening === true && 'listening'].filter(Boolean);
  if (kinds.length > 1) throw invalid(`app.json: ${where} may have only one of path, uptime and listening (it has ${kinds.join(' and ')})`);
  // Liveness and readiness checks watch a running app; a deploy gate runs the startup ones.
  if (type === 'liveness' || type === 'readiness') return undefined;
  const timing = { attempts, timeoutMs: timeout * 1000, waitMs: wait * 1000, initialDelayMs: initialDelay * 1000, port };
  if (path !== undefined) return { kind: 'http', name: name ?? `GET ${path}`, path, content: content === '' ? undefined : content, headers, ...timing };
  if (listening === true) return { kind: 'listening', name: name ?? 'port listening', ...timing };
  // Neither path nor listening: an uptime check, as in Dokku (0 s: running now, never restarted).
  return { kind: 'uptime', name: name ?? `uptime ${formatSeconds((uptime ?? 0) * 1000)}`, uptimeMs: (uptime ?? 0) * 1000, ...timing, attempts: 1 };
}

function parseHeaders(value: unknown, where: string): Array<[string, string]> {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(`app.json: ${where} must be a list of {"name": ..., "value": ...}`);
  return value.map((h, i) => {
    if (!isObject(h) || typeof h.name !== 'string' || typeof h.value !== 'string') throw invalid(`app.json: ${where}[${i}] must be {"name": "...", "value": "..."}`);
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(h.name)) throw invalid(`app.json: ${where}[${i}].name is not a valid header name: ${JSON.stringify(h.name)}`);
    if (!/^[\t\x20-\x7e]*$/.test(h.value)) throw invalid(`app.json: ${where}[${i}].value holds characters a header cannot carry`);
    if (h.name.toLowerCase() === 'host') throw invalid(`app.json: ${where}[${i}]: the Host header is the app's own host name and cannot be set`);
    return [h.name, h.value];
  });
}

function hintFor(check: HealthCheck): string {
  if (check.kind === 'http') return `the app must answer GET ${check.path} with a 2xx or 3xx status${check.content ? ` and a body containing "${check.content}"` : ''}`;
  if (check.kind === 'answering') return 'the app must answer GET / with a status below 500 (a redirect or a 404 will do), or declare its own checks in app.json';
  return 'the app must keep running and listen on $PORT on all addresses (0.0.0.0)';
}

/** The headers a check sends: what the proxy would send for a request that came in over HTTPS. */
function probeHeaders(hostHeader: string): Record<string, string> {
  return {
    host: hostHeader,
    'x-forwarded-proto': 'https',
    'x-forwarded-host': hostHeader,
    'x-forwarded-port': '443',
    'user-agent': 'berth-healthcheck',
    accept: '*/*',
  };
}

type ProbeResult = { ok: boolean; detail: string };

/**
 * One GET to the container, settled once: by `onResponse` (given `done`), by `onError`, or by
 * `onTimeout` after `timeoutMs`; the request is destroyed when it settles.
 */
function getOnce(
  options: { host: string; port: number; path: string; headers: Record<string, string>; timeoutMs: number },
  onResponse: (res: http.IncomingMessage, done: (ok: boolean, detail: string) => void) => void,
  onError: (e: NodeJS.ErrnoException) => ProbeResult,
  onTimeout: () => ProbeResult,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ok, detail });
    };
    const req = http.request({ host: options.host, port: options.port, path: options.path, method: 'GET', headers: options.headers, agent: false }, (res) => onResponse(res, done));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const r = onError(e);
      done(r.ok, r.detail);
    });
    const timer = setTimeout(() => {
      const r = onTimeout();
      done(r.ok, r.detail);
    }, options.timeoutMs);
    req.end();
  });
}

function answerOnce(host: string, port: number, hostHeader: string, timeoutMs: number): Promise<ProbeResult> {
  const started = Date.now();
  return getOnce(
    { host, port, path: '/', headers: probeHeaders(hostHeader), timeoutMs },
    // The status is the answer; the body is not waited for.
    (res, done) => done((res.statusCode ?? 0) < 500, `GET / answered ${res.statusCode ?? 0} in ${Date.now() - started} ms`),
    (e) => {
      if (e.code === 'ECONNREFUSED') return { ok: false, detail: `nothing listens on port ${port}` };
      if (e.code?.startsWith('HPE_')) return { ok: true, detail: `port ${port} accepts connections and speaks no HTTP` };
      if (e.code === 'ECONNRESET' || e.message === 'socket hang up') return { ok: true, detail: `port ${port} accepts connections and closed GET / unanswered` };
      return { ok: false, detail: `${e.code ?? 'error'}: ${e.message}` };
    },
    () => ({ ok: true, detail: `port ${port} accepts connections; no HTTP answer to GET / within ${formatSeconds(timeoutMs)}` }),
  );
}

function httpOnce(check: HttpCheck, host: string, port: number, hostHeader: string): Promise<ProbeResult> {
  const started = Date.now();
  const headers = probeHeaders(hostHeader);
  for (const [name, value] of check.headers) headers[name.toLowerCase()] = value;
  return getOnce(
    { host, port, path: check.path, headers, timeoutMs: check.timeoutMs },
    (res, done) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        if (size < MAX_BODY_BYTES) chunks.push(d);
        size += d.length;
      });
      res.on('error', (e) => done(false, `the answer broke off: ${e.message}`));
      res.on('end', () => {
        const took = `${Date.now() - started} ms`;
        if (status < 200 || status >= 400) return done(false, `status ${status} (${took})`);
        if (check.content !== undefined && !Buffer.concat(chunks).toString('utf8').includes(check.content)) {
          return done(false, `status ${status}, but the body does not contain "${check.content}" (${took})`);
        }
        done(true, `status ${status} in ${took}`);
      });
    },
    (e) => ({ ok: false, detail: e.code === 'ECONNREFUSED' ? `connection refused on port ${port}` : `${e.code ?? 'error'}: ${e.message}` }),
    () => ({ ok: false, detail: `no answer within ${formatSeconds(check.timeoutMs)}` }),
  );
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => done(false, `no connection to port ${port} within ${formatSeconds(timeoutMs)}`), timeoutMs);
    socket.once('connect', () => done(true, `port ${port} accepts connections`));
    socket.once('error', (e: NodeJS.ErrnoException) => done(false, e.code === 'ECONNREFUSED' ? `nothing listens on port ${port}` : `${e.code ?? 'error'} connecting to port ${port}`));
  });
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function invalid(message: string, cause?: unknown): UserError {
  return new UserError('invalid_app_json', message, { hint: "fix app.json's healthchecks (Dokku's format: path, content, attempts, timeout, wait, initialDelay) and push again", cause });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(`app.json: ${where} must be a string, not ${JSON.stringify(value)}`);
  return value;
}

function optionalNumber(value: unknown, where: string, rule: { integer?: boolean; min: number; max: number }): number | undefined {
  if (value === undefined) return undefined;
  const what = rule.integer ? 'whole number' : 'number of seconds';
  if (typeof value !== 'number' || !Number.isFinite(value) || (rule.integer && !Number.isInteger(value)) || value < rule.min || value > rule.max) {
    throw invalid(`app.json: ${where} must be a ${what} from ${rule.min} to ${rule.max}, not ${JSON.stringify(value)}`);
  }
  return value;
}
