// One app: summary and actions (restart, scale, roll back with a confirm step), the live deploy
// panel, releases, processes and containers, domains, config key names, traffic charts, logs.
// Actions go through POST /api/run as the session's key; the app is re-read after each.
import { ApiError, getJson, postJson } from './api.ts';
import { deployPanel } from './deploy-panel.ts';
import { fill, h, minute, type Scope } from './dom.ts';
import { logsPanel } from './logs-panel.ts';
import { metricsPanel } from './metrics-panel.ts';
import { badge, certificateState, errorBox, processList } from './parts.ts';
import type { AppDetail, Release, RunResult } from './types.ts';

const REFRESH_MS = 10_000;

export function appView(scope: Scope, view: HTMLElement, name: string): void {
  const head = h('div', { class: 'app-head' }, h('h1', {}, name));
  const problem = h('div');
  const result = h('div', { class: 'action-result-box' });
  const releases = h('section', { class: 'panel' });
  const processes = h('section', { class: 'panel' });
  const domains = h('section', { class: 'panel' });
  const config = h('section', { class: 'panel' });
  let app: AppDetail | undefined;
  /** The release a rollback waits to be confirmed for. */
  let confirming: number | null = null;
  let busy = false;

  const load = async () => {
    try {
      const answer = await getJson<AppDetail>(`/api/apps/${encodeURIComponent(name)}`);
      if (scope.disposed) return;
      app = answer;
      fill(problem);
      render();
    } catch (e) {
      if (scope.disposed) return;
      if (e instanceof ApiError && e.status === 404) {
        // Gone (destroyed, renamed, or out of the key's scope now): stop its streams and timers.
        scope.dispose();
        return fill(view, h('p', {}, h('a', { href: '/', 'data-link': true }, '← Apps')), errorBox(e));
      }
      fill(problem, errorBox(e));
    }
  };

  /** Runs a command as the session's key and shows what it printed. */
  const act = async (words: string[]) => {
    busy = true;
    render();
    fill(result, h('p', { class: 'muted', 'data-test': 'action-running' }, `Running ${words.join(' ')}…`));
    try {
      const run = await postJson<RunResult>('/api/run', { words });
      fill(
        result,
        h(
          'div',
          { class: `action-result ${run.exitCode === 0 ? 'ok' : 'failed'}`, 'data-test': 'action-result', 'data-exit-code': run.exitCode },
          h('p', {}, h('code', {}, words.join(' ')), run.exitCode === 0 ? ' done' : ` failed (exit code ${run.exitCode})`, ' ', h('button', { type: 'button', class: 'link', onclick: () => fill(result) }, 'dismiss')),
          run.output ? h('pre', { class: 'output' }, run.output) : null,
        ),
      );
    } catch (e) {
      fill(result, errorBox(e, 'action-error'));
    } finally {
      busy = false;
      confirming = null;
      await load();
    }
  };

  const render = () => {
    if (!app) return;
    const current = app;
    fill(
      head,
      h('h1', {}, current.name),
      current.deploying ? badge('deploying', 'busy', 'deploying') : null,
      current.url ? h('a', { href: current.url, class: 'url', rel: 'noreferrer', target: '_blank' }, current.url) : null,
      h(
        'p',
        { class: 'summary' },
        `Release ${current.current === null ? 'none yet' : `v${current.current}`} · `,
        processList(current.processes),
        ' ',
        h('button', { type: 'button', disabled: busy || current.current === null, 'data-test': 'restart', onclick: () => void act(['ps:restart', current.name]) }, 'Restart'),
      ),
    );
    fill(releases, h('h2', {}, 'Releases'), releasesTable(current, confirming, busy, (n) => {
      confirming = n;
      render();
    }, (n) => void act(['releases:rollback', current.name, String(n)])));
    // Re-rendering while a scale field is being edited would throw the edit away.
    if (!processes.contains(document.activeElement)) fill(processes, h('h2', {}, 'Processes'), processesTable(current, busy, (type, count) => void act(['ps:scale', current.name, `${type}=${count}`])), containersTable(current));
    fill(
      domains,
      h('h2', {}, 'Domains'),
      current.domains.length ? h('ul', { class: 'domains' }, ...current.domains.map((d) => h('li', { 'data-test': 'domain', 'data-host': d.host }, h('span', { class: 'host' }, d.host), d.auto ? h('span', { class: 'muted' }, ' (default)') : null, ' ', certificateState(d)))) : h('p', { class: 'muted' }, 'No domains'),
    );
    fill(
      config,
      h('h2', {}, 'Config'),
      current.config.length ? h('ul', { class: 'config', 'data-test': 'config' }, ...current.config.map((key) => h('li', {}, h('code', {}, key)))) : h('p', { class: 'muted', 'data-test': 'config' }, 'No config vars'),
      h('p', { class: 'muted' }, 'Values stay on the server: ', h('code', {}, `config:show ${current.name}`), ' over SSH prints them.'),
    );
  };

  fill(view, h('p', { class: 'crumbs' }, h('a', { href: '/', 'data-link': true }, '← Apps')), head, problem, result, deployPanel(scope, name, () => void load()), releases, processes, domains, config, metricsPanel(scope, name), logsPanel(scope, name));
  void load();
  scope.every(REFRESH_MS, () => {
    if (!busy) void load();
  });
}

function releasesTable(app: AppDetail, confirming: number | null, busy: boolean, ask: (n: number | null) => void, rollBack: (n: number) => void): HTMLElement {
  if (!app.releases.length) return h('p', { class: 'muted' }, 'No releases yet');
  const actions = (r: Release) => {
    if (r.current) return badge('current', 'ok');
    if (r.pruned) return h('span', { class: 'muted', title: 'its image was pruned' }, 'pruned');
    if (confirming === r.number)
      return h(
        'span',
        { class: 'confirm' },
        `Roll ${app.name} back to v${r.number}? `,
        h('button', { type: 'button', class: 'danger', disabled: busy, 'data-test': 'rollback-confirm', onclick: () => rollBack(r.number) }, 'Roll back'),
        ' ',
        h('button', { type: 'button', disabled: busy, 'data-test': 'rollback-cancel', onclick: () => ask(null) }, 'Cancel'),
      );
    return h('button', { type: 'button', disabled: busy || app.deploying, 'data-test': 'rollback', onclick: () => ask(r.number) }, `Roll back to v${r.number}`);
  };
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { 'data-test': 'releases' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Release'), h('th', {}, 'Description'), h('th', {}, 'Build'), h('th', {}, 'By'), h('th', {}, 'Created'), h('th', {}, ''))),
      h('tbody', {}, ...app.releases.map((r) => h('tr', { 'data-test': 'release-row', 'data-release': r.number, class: r.current ? 'current' : null }, h('td', {}, `v${r.number}`), h('td', {}, r.description), h('td', {}, r.builder), h('td', {}, r.by), h('td', { class: 'nowrap' }, minute(r.createdAt)), h('td', { class: 'nowrap' }, actions(r))))),
    ),
  );
}

function processesTable(app: AppDetail, busy: boolean, scale: (type: string, count: number) => void): HTMLElement {
  if (!app.processes.length) return h('p', { class: 'muted' }, 'No processes');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { 'data-test': 'processes' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Type'), h('th', {}, 'Running'), h('th', {}, 'Scale'))),
      h(
        'tbody',
        {},
        ...app.processes.map((p) => {
          const count = h('input', { type: 'number', min: 0, max: 100, value: p.count, class: 'count', 'aria-label': `${p.type} processes`, 'data-test': 'scale-count' });
          const submit = (e: Event) => {
            e.preventDefault();
            const n = Number(count.value);
            if (Number.isInteger(n) && n >= 0) scale(p.type, n);
          };
          return h(
            'tr',
            { 'data-test': 'process-row', 'data-type': p.type },
            h('td', {}, p.type),
            h('td', {}, `${p.running}/${p.count}`),
            h('td', {}, h('form', { class: 'inline', onsubmit: submit }, count, ' ', h('button', { type: 'submit', disabled: busy, 'data-test': 'scale' }, 'Scale'))),
          );
        }),
      ),
    ),
  );
}

function containersTable(app: AppDetail): HTMLElement {
  if (!app.containers.length) return h('p', { class: 'muted' }, 'No containers');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { 'data-test': 'containers' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Container'), h('th', {}, 'Type'), h('th', {}, 'Release'), h('th', {}, 'State'), h('th', {}, 'Started'))),
      h('tbody', {}, ...app.containers.map((c) => h('tr', { 'data-test': 'container-row' }, h('td', {}, h('code', {}, c.id)), h('td', {}, c.type), h('td', {}, `v${c.release}`), h('td', {}, c.state), h('td', { class: 'nowrap' }, minute(c.startedAt))))),
    ),
  );
}
