// The home view: every app the session's key may see, with its processes, domains and whether a
// deploy runs now (re-read every 5 s), and the services when there are any.
import { getJson } from './api.ts';
import { fill, h, minute, plural, type Scope } from './dom.ts';
import { badge, certificateState, errorBox, processList } from './parts.ts';
import type { AppSummary, Service } from './types.ts';

const REFRESH_MS = 5000;

export function appsView(scope: Scope, view: HTMLElement): void {
  const problem = h('div');
  const list = h('div', { class: 'apps', 'data-test': 'apps' }, h('p', { class: 'muted' }, 'Loading apps…'));
  const services = h('div');
  fill(view, h('h1', {}, 'Apps'), problem, list, services);
  const load = async () => {
    try {
      const [{ apps }, servicesAnswer] = await Promise.all([getJson<{ apps: AppSummary[] }>('/api/apps'), getJson<{ services: Service[] }>('/api/services').catch(() => ({ services: [] }))]);
      if (scope.disposed) return;
      fill(problem);
      fill(list, apps.length ? h('ul', { class: 'cards' }, ...apps.map(appCard)) : h('p', { class: 'muted', 'data-test': 'no-apps' }, 'No apps yet: the first git push to a new name creates one.'));
      fill(services, servicesAnswer.services.length ? servicesSection(servicesAnswer.services) : null);
    } catch (e) {
      if (!scope.disposed) fill(problem, errorBox(e));
    }
  };
  void load();
  scope.every(REFRESH_MS, () => void load());
}

function appCard(app: AppSummary): HTMLElement {
  return h(
    'li',
    { class: 'card', 'data-test': 'app-row', 'data-app': app.name },
    h('div', { class: 'card-head' }, h('a', { href: `/apps/${encodeURIComponent(app.name)}`, 'data-link': true, class: 'app-name' }, app.name), app.deploying ? badge('deploying', 'busy', 'deploying') : null),
    app.url ? h('a', { href: app.url, class: 'url', rel: 'noreferrer', target: '_blank' }, app.url) : h('span', { class: 'muted' }, 'no URL'),
    h(
      'dl',
      {},
      h('dt', {}, 'Release'),
      h('dd', { 'data-test': 'current-release' }, app.current === null ? 'none yet' : `v${app.current}`),
      h('dt', {}, 'Processes'),
      h('dd', {}, processList(app.processes)),
      h('dt', {}, 'Domains'),
      h('dd', {}, app.domains.length ? h('ul', { class: 'domains' }, ...app.domains.map((d) => h('li', {}, h('span', { class: 'host' }, d.host), ' ', certificateState(d)))) : h('span', { class: 'muted' }, 'none')),
    ),
  );
}

function servicesSection(services: Service[]): HTMLElement {
  return h(
    'section',
    { 'data-test': 'services' },
    h('h2', {}, 'Services'),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Service'), h('th', {}, 'Kind'), h('th', {}, 'Status'), h('th', {}, 'Linked to'), h('th', {}, 'Backups'))),
        h(
          'tbody',
          {},
          ...services.map((svc) => {
            const backups = svc.backups;
            const latest = backups?.reduce<string | null>((last, b) => (last === null || b.createdAt > last ? b.createdAt : last), null) ?? null;
            return h(
              'tr',
              { 'data-test': 'service-row', 'data-service': svc.name },
              h('td', {}, svc.name),
              h('td', {}, svc.kind),
              h('td', {}, svc.status),
              h('td', {}, svc.links.join(', ') || '—'),
              h('td', {}, backups === null ? 'admins only' : backups.length ? `${plural(backups.length, 'backup')}, last ${minute(latest!)}` : 'none'),
            );
          }),
        ),
      ),
    ),
  );
}
