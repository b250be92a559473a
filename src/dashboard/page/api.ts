// The dashboard's API from the browser: JSON reads, CSRF-carrying posts, and the one error shape
// every answer that is not 2xx has ({"error": {code, message, hint?}}).

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;

  constructor(status: number, code: string, message: string, hint?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

let csrf = '';
let onNoSession: () => void = () => {};

/** The token every POST carries in X-Berth-CSRF (from GET /api/session). */
export function setCsrf(token: string): void {
  csrf = token;
}

/** What happens when an answer says the session is gone (401): the page shows how to log in. */
export function whenSessionEnds(fn: () => void): void {
  onNoSession = fn;
}

export function getJson<T>(path: string): Promise<T> {
  return call<T>(path, { headers: { accept: 'application/json' } });
}

/** A POST with a JSON body, the session's CSRF token and (from the browser) the page's Origin. */
export function postJson<T>(path: string, body: unknown): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (csrf) headers['x-berth-csrf'] = csrf;
  return call<T>(path, { method: 'POST', headers, body: JSON.stringify(body) });
}

/** A login link's token for a session cookie; a refused one is an ApiError, never the 401 screen. */
export function logIn(token: string): Promise<unknown> {
  return call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ token }) }, false);
}

/** Pauses before a read is tried again after the network failed (a phone changing networks). */
const READ_RETRIES_MS = [500, 1500];

async function call<T>(path: string, init: RequestInit, sessionExpected = true): Promise<T> {
  let response: Response | undefined;
  for (let attempt = 0; !response; attempt++) {
    try {
      response = await fetch(path, { ...init, credentials: 'same-origin', cache: 'no-store' });
    } catch {
      // A read is safe to repeat; a POST is not (the command may have run).
      const pause = init.method === 'POST' ? undefined : READ_RETRIES_MS[attempt];
      if (pause === undefined) throw new ApiError(0, 'unreachable', init.method === 'POST' ? 'the connection to berth dropped before it answered' : 'berth did not answer', init.method === 'POST' ? 'the command may have run: the page shows the app as it is now' : 'check that it is running, then reload this page');
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (response.ok) return body as T;
  const error = (body as { error?: { code?: string; message?: string; hint?: string } } | undefined)?.error;
  const failure = new ApiError(response.status, error?.code ?? `http_${response.status}`, error?.message ?? `berth answered ${response.status} ${response.statusText}`.trim(), error?.hint);
  if (response.status === 401 && sessionExpected) onNoSession();
  throw failure;
}
