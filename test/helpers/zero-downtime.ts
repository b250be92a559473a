// Fixtures for redeploys under load, shared by the zero-downtime tests and bench:redeploy: an app
// with a health route, a slow route and a WebSocket echo; wrk as the load (its summary parsed); a
// Node load loop that records every answer; commands run without blocking the event loop; and the
// swap times read back from the daemon's log.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { Agent, WebSocket } from 'undici';
import { BASE_IMAGE, type RunResult } from './daemon.ts';

/** Like run(), without blocking the event loop: load loops and sockets keep going meanwhile. */
export function runAsync(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export interface AppOptions {
  /** What `/` answers (then the GREETING config var, if any). */
  message: string;
  /** What /health answers with; 500 makes its check fail. */
  healthStatus?: number;
  /** Attempts of the app.json check, and seconds between them. */
  attempts?: number;
  wait?: number;
  /** Give the image a Docker HEALTHCHECK (every second): unhealthy while /tmp/sick exists. */
  dockerHealthcheck?: boolean;
}

/**
 * A Node app built FROM the local base image: `/` answers its message and GREETING, `/health`
 * answers "ok" (the app.json startup check looks for it), `/slow` answers after 2 s, and a
 * WebSocket upgrade echoes text frames as `MESSAGE: text`.
 */
export function zeroDowntimeApp(options: AppOptions): Record<string, string> {
  const appJson = { healthchecks: { web: [{ type: 'startup', name: 'ready', path: '/health', content: 'ok', attempts: options.attempts ?? 20, timeout: 2, wait: options.wait ?? 0.25 }] } };
  return {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY . /app\n${options.dockerHealthcheck ? 'HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["sh", "-c", "test ! -f /tmp/sick"]\n' : ''}CMD ["node", "/app/server.js"]\n`,
    'app.json': JSON.stringify(appJson, null, 2) + '\n',
    'server.js': `const http = require('http');
const crypto = require('crypto');
const message = ${JSON.stringify(options.message)};
const healthStatus = ${options.healthStatus ?? 200};
const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    if (healthStatus !== 200) console.error('health: database unreachable (' + healthStatus + ')');
    res.statusCode = healthStatus;
    return res.end(healthStatus === 200 ? 'ok' : 'not ready');
  }
  if (req.url === '/slow') return setTimeout(() => res.end(message + ' slow done'), 2000);
  res.end(message + ' ' + (process.env.GREETING || '') + '\\n');
});
server.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 6) {
      const len = buf[1] & 0x7f;
      if (len > 125 || buf.length < 6 + len) return;
      const mask = buf.subarray(2, 6);
      const payload = Buffer.from(buf.subarray(6, 6 + len)).map((b, i) => b ^ mask[i % 4]);
      const opcode = buf[0] & 0x0f;
      buf = buf.subarray(6 + len);
      if (opcode === 1) {
        const text = Buffer.from(message + ': ' + payload.toString());
        socket.write(Buffer.concat([Buffer.from([0x81, text.length]), text]));
      } else if (opcode === 8) {
        socket.end(Buffer.concat([Buffer.from([0x88, payload.length]), payload]));
      }
    }
  });
  socket.on('error', () => socket.destroy());
});
server.listen(Number(process.env.PORT), '0.0.0.0');
`,
  };
}

export interface ProbationAppOptions {
  /** What `/` answers, followed by a newline. */
  message: string;
  /** The status `/` answers with (500: the default check refuses it). Default 200. */
  rootStatus?: number;
  /** Exit with code 1 this long after start, saying why on stderr first. */
  crashAfterMs?: number;
}

/**
 * A Node app without app.json, built FROM the local base image: the default checks (TCP, then
 * `GET /`) and probation are all it gets. `/` answers its message; it can answer 500 instead, or
 * crash a while after it started.
 */
export function probationApp(options: ProbationAppOptions): Record<string, string> {
  return {
    Dockerfile: `FROM ${BASE_IMAGE}\nCOPY server.js /app/server.js\nCMD ["node", "/app/server.js"]\n`,
    'server.js': `const http = require('http');
const message = ${JSON.stringify(options.message)};
const status = ${options.rootStatus ?? 200};
${
  options.crashAfterMs === undefined
    ? ''
    : `setTimeout(() => { console.error('crash: lost the connection to the database, giving up'); process.exit(1); }, ${options.crashAfterMs});\n`
}http.createServer((req, res) => {
  res.statusCode = status;
  res.end(status === 200 ? message + '\\n' : 'broken\\n');
}).listen(Number(process.env.PORT), '0.0.0.0');
`,
  };
}

export interface WrkResult {
  requests: number;
  seconds: number;
  /** "Non-2xx or 3xx responses" (0 when wrk prints no such line). */
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  latencyMax: string;
  /** The 99th percentile of latency, when wrk ran with `latency: true`. */
  p99?: string;
  output: string;
}

/** wrk against the proxy with the app's Host header, until stop() (SIGINT: wrk then prints its summary). */
export function startWrk(port: number, host: string, options: { connections: number; threads?: number; path?: string; latency?: boolean }): { stop(): Promise<WrkResult> } {
  const child = spawn('wrk', ['-t', String(options.threads ?? 2), '-c', String(options.connections), '-d', '3600s', '--timeout', '10s', ...(options.latency ? ['--latency'] : []), '-H', `Host: ${host}`, `http://127.0.0.1:${port}${options.path ?? '/'}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  // A test that fails before stop() must not keep its file running for wrk's hour, nor leave wrk
  // behind: it holds the event loop no longer, and goes when the test process does.
  const pipes = [child.stdout, child.stderr] as unknown as Array<{ ref(): void; unref(): void }>;
  child.unref();
  for (const pipe of pipes) pipe.unref();
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  void exited.then(() => process.off('exit', kill));
  return {
    async stop() {
      child.ref();
      for (const pipe of pipes) pipe.ref();
      child.kill('SIGINT');
      const code = await exited;
      if (code !== 0) throw new Error(`wrk exited with ${code}:\n${output}`);
      return parseWrk(output);
    },
  };
}

export function parseWrk(output: string): WrkResult {
  const total = /(\d+) requests in ([\d.]+)(m?s)/.exec(output);
  if (!total) throw new Error(`no request count in wrk's output:\n${output}`);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const latency = /Latency\s+\S+\s+\S+\s+(\S+)/.exec(output);
  const p99 = /\s99%\s+(\S+)/.exec(output);
  return {
    requests: Number(total[1]),
    seconds: Number(total[2]) * (total[3] === 'ms' ? 0.001 : 1),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: errors ? { connect: Number(errors[1]), read: Number(errors[2]), write: Number(errors[3]), timeout: Number(errors[4]) } : { connect: 0, read: 0, write: 0, timeout: 0 },
    latencyMax: latency?.[1] ?? '?',
    ...(p99 ? { p99: p99[1]! } : {}),
    output,
  };
}

export interface LoadRecord {
  status: number;
  body: string;
  error?: string;
  /** Date.now() when the answer ended. */
  at: number;
}

/** `concurrency` keep-alive loops of GET `path`, every answer (or error) recorded, until stop(). */
export function startLoadLoop(port: number, host: string, concurrency: number, path = '/'): { records: LoadRecord[]; stop(): Promise<LoadRecord[]> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const records: LoadRecord[] = [];
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          records.push({ status: res.statusCode ?? 0, body, at: Date.now() });
          resolve();
        });
        res.on('error', (e) => {
          records.push({ status: 0, body, error: e.message, at: Date.now() });
          resolve();
        });
      });
      req.on('error', (e) => {
        records.push({ status: 0, body: '', error: e.message, at: Date.now() });
        resolve();
      });
      req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
      req.end();
    });
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) await one();
  });
  return {
    records,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return records;
    },
  };
}

/** A WebSocket (undici's client) to `host` through the proxy on loopback: the name need not resolve. */
export function openWebSocket(port: number, host: string): Promise<{ ws: WebSocket; messages: string[]; closed: Promise<{ code: number; reason: string; wasClean: boolean; at: number }> }> {
  const dispatcher = new Agent({
    connect: {
      lookup: (_name: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
        options?.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4),
    } as never,
  });
  const ws = new WebSocket(`ws://${host}:${port}/socket`, { dispatcher } as never);
  const messages: string[] = [];
  ws.addEventListener('message', (e) => messages.push(String(e.data)));
  const closed = new Promise<{ code: number; reason: string; wasClean: boolean; at: number }>((resolve) =>
    ws.addEventListener('close', (e) => {
      resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean, at: Date.now() });
      void dispatcher.close();
    }),
  );
  return new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve({ ws, messages, closed }));
    ws.addEventListener('error', () => reject(new Error(`the WebSocket to ${host} failed to open`)));
  });
}

export interface LogEvent {
  time: string;
  event: string;
  [field: string]: unknown;
}

/** The daemon's JSON log lines, parsed (other lines skipped). */
export function logEvents(text: string): LogEvent[] {
  const events: LogEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line) as LogEvent);
    } catch {
      // a partial line
    }
  }
  return events;
}

export interface SwapTiming {
  app: string;
  release: number;
  /** Last health pass of the new web containers → the swap (publish). */
  passToSwapMs: number;
  /** Last health pass → the first request routed to one of them. */
  passToFirstRequestMs: number;
}

/**
 * For each swap that added web targets: the time from the last health pass of those targets to
 * the swap, and to the first request the proxy routed to one of them, all on the clock the
 * daemon's processes share (`mono`, see sharedClockMs). A swap whose new targets got no request yet is left out.
 */
export function swapTimings(events: readonly LogEvent[]): SwapTiming[] {
  const timings: SwapTiming[] = [];
  for (const swap of events.filter((e) => e.event === 'route_swapped')) {
    const added = (swap.added as string[] | undefined) ?? [];
    if (added.length === 0) continue;
    const swapAt = swap.mono as number;
    const passes = events.filter((e) => e.event === 'health_check_passed' && added.includes(e.container as string) && (e.mono as number) <= swapAt).map((e) => e.mono as number);
    // The proxy logs one first request per target, and a new target gets none before its swap:
    // no ordering on the clock is needed (the processes' clocks may differ by a fraction of a ms).
    const firsts = events.filter((e) => e.event === 'proxy_target_first_request' && added.includes(e.target as string)).map((e) => e.mono as number);
    if (passes.length === 0 || firsts.length === 0) continue;
    const pass = Math.max(...passes);
    timings.push({ app: swap.app as string, release: swap.release as number, passToSwapMs: swapAt - pass, passToFirstRequestMs: Math.min(...firsts) - pass });
  }
  return timings;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
