// The dashboard in the browser: logs in from a one-time link (/login#TOKEN), reads the session,
// then shows the apps the session's key may see (/) or one app (/apps/NAME), routed client-side.
// Without a session it shows only how to get one.
import { ApiError, getJson, logIn, postJson, setCsrf, whenSessionEnds } from './api.ts';
import { appView } from './app-view.ts';
import { appsView } from './apps-view.ts';
import { fill, h, rich, Scope } from './dom.ts';
import { errorBox } from './parts.ts';
import type { Session } from './types.ts';

const root = document.getElementById('app')!;
let scope = new Scope();
let session: Session | undefined;

whenSessionEnds(() => signedOut());

document.addEventListener('click', (e) => {
  const link = (e.target as Element | null)?.closest?.('a[data-link]');
  if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  history.pushState(null, '', link.getAttribute('href'));
  show();
});
window.addEventListener('popstate', () => show());

void start();

async function start(): Promise<void> {
  if (location.pathname === '/login') {
    // The token must not stay in the address bar, the history or a bookmark.
    const token = location.hash.slice(1);
    history.replaceState(null, '', '/login');
    if (token) return login(token);
    history.replaceState(null, '', '/');
  }
  await loadSession();
}

async function login(token: string): Promise<void> {
  fill(root, h('section', { class: 'signin' }, h('h1', {}, 'berth'), h('p', { 'data-test': 'login-progress' }, 'Logging in…')));
  try {
    await logIn(token);
  } catch (e) {
    const hint = e instanceof ApiError && e.hint ? e.hint : `run \`${sshCommand()}\` for a new link`;
    const failure = e instanceof ApiError ? new ApiError(e.status, e.code, e.message, hint) : e;
    return fill(root, h('section', { class: 'signin' }, h('h1', {}, 'berth'), errorBox(failure, 'login-error')));
  }
  history.replaceState(null, '', '/');
  await loadSession();
}

async function loadSession(): Promise<void> {
  try {
    session = await getJson<Session>('/api/session');
  } catch (e) {
    // A 401 has already shown how to log in.
    if (!(e instanceof ApiError && e.status === 401)) fill(root, h('section', { class: 'signin' }, h('h1', {}, 'berth'), errorBox(e), h('p', {}, h('button', { type: 'button', onclick: () => void loadSession() }, 'Try again'))));
    return;
  }
  setCsrf(session.csrf);
  const view = h('main', { class: 'view' });
  fill(root, header(session), view, h('footer', { class: 'muted' }, `berth ${session.version} · ${session.domain}`));
  show();
}

/** Renders the view of the address bar's path. */
function show(): void {
  const view = root.querySelector<HTMLElement>('main.view');
  if (!session || !view) return;
  scope.dispose();
  scope = new Scope();
  const path = location.pathname;
  const app = /^\/apps\/([^/]+)\/?$/.exec(path);
  window.scrollTo(0, 0);
  if (path === '/' || path === '/login') {
    document.title = 'Apps · berth';
    appsView(scope, view);
  } else if (app) {
    const name = decodeURIComponent(app[1]!);
    document.title = `${name} · berth`;
    appView(scope, view, name);
  } else {
    document.title = 'berth';
    fill(view, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '/', 'data-link': true }, 'See the apps')));
  }
}

function header(current: Session): HTMLElement {
  const scopeText = current.admin ? 'admin' : `scoped to ${current.apps?.join(', ') || 'no apps'}`;
  return h(
    'header',
    { class: 'top' },
    h('a', { href: '/', 'data-link': true, class: 'brand' }, 'berth'),
    h('span', { class: 'who' }, h('span', { 'data-test': 'key-name' }, current.key), ' ', h('span', { class: `badge ${current.admin ? 'admin' : 'scoped'}`, 'data-test': 'key-scope' }, scopeText)),
    h('button', { type: 'button', 'data-test': 'logout', onclick: () => void logOut() }, 'Log out'),
  );
}

async function logOut(): Promise<void> {
  try {
    await postJson('/api/logout', {});
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    return void root.querySelector('main.view')?.prepend(errorBox(e));
  }
  signedOut('You are logged out.');
}

/** No session: how to get one, and nothing else. */
function signedOut(note?: string): void {
  scope.dispose();
  session = undefined;
  setCsrf('');
  history.replaceState(null, '', '/');
  document.title = 'Log in · berth';
  fill(
    root,
    h(
      'section',
      { class: 'signin', 'data-test': 'login-needed' },
      h('h1', {}, 'berth'),
      note ? h('p', {}, note) : null,
      h('p', {}, rich(`Log in with \`${sshCommand()}\``)),
      h('p', { class: 'muted' }, rich('It prints a one-time link, valid for 5 minutes. On the server itself, `berth dashboard` does the same.')),
    ),
  );
}

/** The SSH command that prints a login link: the dashboard is berth.DOMAIN, SSH is on DOMAIN. */
function sshCommand(): string {
  const host = location.hostname.replace(/^berth\./, '');
  return `ssh berth@${host} dashboard`;
}
