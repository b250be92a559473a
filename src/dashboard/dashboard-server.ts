// The dashboard's HTTP server (--dashboard-listen, and berth.DOMAIN through the proxy): the page's
// files, the JSON API, its event streams and actions. Every API request but the login needs a
// session, acts as the session's key as the state has it now, and sees only that key's apps.
import http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { isValidAppName } from '../app-name.ts';
import type { Config } from '../config.ts';
import { UserError } from '../errors.ts';
import { listenError } from '../listen-error.ts';
import { log, newErrorId } from '../log.ts';
import type { Platform } from '../platform/platform.ts';
import type { State } from '../platform/state.ts';
import { VERSION } from '../version.ts';
import { runAction, wordsOf } from './actions.ts';
import { ApiError, crossSite, httpsRequired, noSession, notFound, readJson, SECURITY_HEADERS, sendError, sendJson } from './answers.ts';
import { appDetail, appSummary } from './app-views.ts';
import { dashboardAssets } from './assets.ts';
import { plainThroughProxy, sameSitePost } from './csrf.ts';
import { serviceViews } from './service-views.ts';
import { actorName, actorNow, isAdmin, maySee, type Actor } from './identity.ts';
import { dashboardHost, tunnelCommand, type LoginLinks } from './login-links.ts';
import type { RequestHistory } from './request-history.ts';
import { clearCookie, sessionCookie, Sessions, setCookie, type Session } from './sessions.ts';
import { LogThrottle } from './log-throttle.ts';
import { OpenStreams, type OpenStream } from './open-streams.ts';
import { deployStream, logStream, MAX_LOG_TAIL } from './streams.ts';
import { closeServer } from '../close-server.ts';

export interface DashboardDeps {
  state: State;
  platform: Platform;
  /** Where users reach an app. */
  appUrl(app: string): string;
  /** Request rates and latencies per app, sampled from berth's metrics. */
  history: RequestHistory;
  links: LoginLinks;
  sessions?: Sessions;
}

/** Page paths the HTML shell answers; the page routes on the client. */
const PAGE_PATH = /^\/(?:login|apps\/[a-z][a-z0-9-]{0,62})?$/;
const MAX_BODY_BYTES = 64 * 1024;

export class DashboardServer {
  readonly #deps: DashboardDeps;
  readonly #host: string;
  readonly #port: number;
  readonly links: LoginLinks;
  readonly sessions: Sessions;
  #server: http.Server | undefined;
  #stopKeys: (() => void) | undefined;
  /** Actions (/api/run) running now: a retiring control plane lets them finish. */
  #actions = 0;
  #retiring = false;
  /** dashboard_login_refused, at most once a minute per client address. */
  readonly #refusedLogins = new LogThrottle('dashboard_login_refused');
  /** Event streams open now, each ended with its session or its app. */
  readonly streams = new OpenStreams((stream) => this.#streamMayGoOn(stream));

  constructor(deps: DashboardDeps, listen: { host: string; port: number }) {
    this.#deps = deps;
    this.#host = listen.host;
    this.#port = listen.port;
    this.links = deps.links;
    this.sessions = deps.sessions ?? new Sessions();
  }

  /** The port it listens on (the real one when 0 was asked). */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? this.#port;
  }

  /** Where the proxy and a browser on this server reach the listener. */
  target(): { host: string; port: number } {
    return { host: this.#host === '0.0.0.0' ? '127.0.0.1' : this.#host === '::' ? '::1' : this.#host, port: this.port };
  }

  /** The admin listener's origin, as a browser on this server reaches it. */
  localOrigin(): string {
    const { host, port } = this.target();
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  async start(): Promise<void> {
    await dashboardAssets(); // built (from source) or unpacked once, before the first request waits for it
    const server = http.createServer((req, res) => void this.#handle(req, res));
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(listenError(e, { what: 'dashboard', address: `${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`, flag: '--dashboard-listen (or off)' })));
      server.listen(this.#port, this.#host, () => resolve());
    });
    this.#server = server;
    // A removed key's sessions end at once, not at their next request.
    this.#stopKeys = this.#deps.state.keys.onChange(() => {
      this.sessions.endWhere((identity) => actorNow(identity, this.#deps.state) === undefined);
      this.streams.sweep();
    });
    log.info('dashboard_listening', { address: this.#host, port: this.port });
  }

  /**
   * A retiring control plane (an upgrade) takes no new login or action: every POST answers 503
   * `retiring` from now on; reads and open streams go on until the server stops.
   */
  stopAccepting(): void {
    this.#retiring = true;
  }

  /** Resolves once no action runs (a retiring control plane waits for it, up to its deadline). */
  async idle(): Promise<void> {
    while (this.#actions > 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  async stop(): Promise<void> {
    this.#stopKeys?.();
    this.streams.endAll();
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await closeServer(server);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (!hostAllowed(req.headers.host, this.#deps.state.config)) {
      // A name that merely resolves here (DNS rebinding) is not the dashboard.
      res.writeHead(421, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end(`the dashboard is served at ${dashboardHost(this.#deps.state.config)}\n`);
      return;
    }
    // Over HTTPS (through the proxy), the browser keeps to HTTPS for this name from then on; not
    // for DOMAIN's other names (includeSubDomains), which are apps with their own rules.
    if (req.headers['x-forwarded-proto'] === 'https') res.setHeader('strict-transport-security', 'max-age=31536000');
    try {
      if (url.pathname.startsWith('/api/')) await this.#api(req, res, url);
      else await this.#page(req, res, url.pathname);
    } catch (e) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (e instanceof ApiError) return sendError(res, e);
      // An app gone between the check and the read (a race) answers as a missing one does.
      if (e instanceof UserError) return sendError(res, e.code === 'app_not_found' ? notFound(e.message) : new ApiError(400, e.code, e.message, e.hint));
      const id = newErrorId();
      log.error('dashboard_request_failed', { id, method: req.method, path: url.pathname, error: e });
      sendError(res, new ApiError(500, 'internal', `the dashboard failed to answer (error id ${id})`));
    }
  }

  async #page(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...SECURITY_HEADERS, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET\n');
      return;
    }
    const assets = await dashboardAssets();
    const asset = PAGE_PATH.test(path) ? assets.get('/') : path.startsWith('/assets/') ? assets.get(path) : undefined;
    if (!asset) {
      res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    const headers = { ...SECURITY_HEADERS, 'content-type': asset.contentType, etag: asset.etag, 'cache-control': 'no-cache' };
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(asset.body.length) });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }

  async #api(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const post = req.method === 'POST';
    if (plainThroughProxy(req)) {
      const local = this.localOrigin();
      throw httpsRequired(`open an SSH tunnel to the admin listener (${tunnelCommand(this.#deps.state.config, local)}, as your login on the server), then use the ${local} link that \`${sshCommand(this.#deps.state.config)} dashboard\` prints`);
    }
    if (post && !sameSitePost(req)) throw crossSite();
    if (post && this.#retiring) throw new ApiError(503, 'retiring', 'berth is being upgraded: this control plane takes no new login or action', 'try again in a few seconds');
    if (path === '/api/login') {
      if (!post) throw new ApiError(405, 'method_not_allowed', 'log in with POST');
      return this.#login(req, res);
    }
    const cookie = sessionCookie(req.headers.cookie);
    const session = this.sessions.use(cookie);
    if (!session) throw noSession();
    const actor = actorNow(session.identity, this.#deps.state);
    if (!actor) {
      this.sessions.end(cookie);
      throw noSession();
    }
    if (post && !sameSitePost(req, session)) throw crossSite();
    const route = `${req.method} ${path.replace(/^\/api\/apps\/[^/]+/, '/api/apps/APP')}`;
    const app = () => this.#visibleApp(actor, path.split('/')[3]!);
    switch (route) {
      case 'POST /api/logout':
        this.sessions.end(cookie);
        this.streams.sweep();
        return sendJson(res, 200, { ok: true }, { 'set-cookie': clearCookie() });
      case 'GET /api/session':
        return sendJson(res, 200, this.#sessionView(actor, session));
      case 'GET /api/apps': {
        const names = this.#deps.state.apps.list().map((a) => a.name).filter((name) => maySee(actor, name, this.#deps.state)).sort();
        return sendJson(res, 200, { apps: await Promise.all(names.map((name) => appSummary(this.#deps, name))) });
      }
      case 'GET /api/apps/APP':
        return sendJson(res, 200, await appDetail(this.#deps, app()));
      case 'GET /api/apps/APP/metrics':
        return sendJson(res, 200, this.#deps.history.series(this.#deps.state.apps.require(app()).id));
      case 'GET /api/apps/APP/deploys/live': {
        const name = app();
        return deployStream(res, this.#deps.platform, name, this.#openStream(session, name, res));
      }
      case 'GET /api/apps/APP/logs': {
        const name = app();
        const tail = Number(url.searchParams.get('tail') ?? 100);
        if (!Number.isInteger(tail) || tail < 0 || tail > MAX_LOG_TAIL) throw new ApiError(400, 'bad_tail', `tail takes a number of lines from 0 to ${MAX_LOG_TAIL}`);
        return logStream(res, this.#deps.platform, name, tail, this.#openStream(session, name, res));
      }
      case 'GET /api/services':
        return sendJson(res, 200, { services: await serviceViews(this.#deps.platform, actor) });
      case 'POST /api/run': {
        const words = wordsOf(await readJson(req, MAX_BODY_BYTES), sshCommand(this.#deps.state.config));
        this.#actions++;
        try {
          return sendJson(res, 200, await runAction(this.#deps, actor, words, { address: clientAddress(req), signal: closed(res) }));
        } finally {
          this.#actions--;
        }
      }
    }
    throw notFound(`no API at ${req.method} ${path}`);
  }

  async #login(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req, 4096);
    const identity = this.links.redeem(body.token);
    const actor = identity && actorNow(identity, this.#deps.state);
    if (!identity || !actor) {
      this.#refusedLogins.note(clientAddress(req));
      throw new ApiError(403, 'login_refused', 'this login link was used or has expired', `run \`${sshCommand(this.#deps.state.config)} dashboard\` for a new one`);
    }
    const { cookie } = this.sessions.create(identity);
    log.info('dashboard_login', { key: actorName(actor), address: clientAddress(req) });
    sendJson(res, 200, { ok: true }, { 'set-cookie': setCookie(cookie) });
  }

  #sessionView(actor: Actor, session: Session): Record<string, unknown> {
    const { state } = this.#deps;
    return {
      key: actorName(actor),
      admin: isAdmin(actor),
      apps: isAdmin(actor) ? null : state.apps.list().map((a) => a.name).filter((name) => maySee(actor, name, state)).sort(),
      csrf: session.csrf,
      version: VERSION,
      domain: state.config.domain,
      expiresAt: new Date(session.expiresAt).toISOString(),
    };
  }

  #openStream(session: Session, app: string, res: http.ServerResponse): AbortSignal {
    return this.streams.open({ session, app, appId: this.#deps.state.apps.require(app).id }, res);
  }

  /** A stream goes on while its session is open, its key sees its app, and its app is the same one (not destroyed, not renamed). */
  #streamMayGoOn(stream: OpenStream): boolean {
    const { state } = this.#deps;
    if (!this.sessions.alive(stream.session)) return false;
    const actor = actorNow(stream.session.identity, state);
    return actor !== undefined && state.apps.get(stream.app)?.id === stream.appId && maySee(actor, stream.app, state);
  }

  /** The app of a path, when it exists and the actor may see it: otherwise the same 404 as a missing one. */
  #visibleApp(actor: Actor, segment: string): string {
    let name: string;
    try {
      name = decodeURIComponent(segment);
    } catch {
      throw notFound('no such app');
    }
    if (!isValidAppName(name) || !this.#deps.state.apps.get(name) || !maySee(actor, name, this.#deps.state)) throw notFound(`no app ${name} that this key may see`);
    return name;
  }
}

/** `ssh [-p PORT] berth@DOMAIN`, for hints. */
export function sshCommand(config: Pick<Config, 'domain' | 'sshPort'>): string {
  return `ssh ${config.sshPort === 22 ? '' : `-p ${config.sshPort} `}berth@${config.domain}`;
}

/** berth.DOMAIN, localhost or an IP address, with any port. */
export function hostAllowed(host: string | undefined, config: Pick<Config, 'domain'>): boolean {
  if (!host) return false;
  const name = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  return name === dashboardHost(config) || name === 'localhost' || isIP(name.replace(/^\[|\]$/g, '')) !== 0;
}

/** The client's address: the proxy's X-Forwarded-For (whose last entry the proxy added) when the request came through it. */
function clientAddress(req: http.IncomingMessage): string {
  const peer = req.socket.remoteAddress ?? '?';
  const forwarded = req.headers['x-forwarded-for'];
  if (typeof forwarded !== 'string' || !(peer === '127.0.0.1' || peer === '::1' || peer === '::ffff:127.0.0.1')) return peer;
  return forwarded.split(',').at(-1)!.trim() || peer;
}

/** Aborted when the client goes away (or the answer is over). */
function closed(res: http.ServerResponse): AbortSignal {
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  return abort.signal;
}
