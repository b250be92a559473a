// The logs panel: the app's last 100 lines, then new ones as they come (as `logs APP -t` prints
// them); "follow" keeps the view at the newest line.
import { h, type Scope } from './dom.ts';
import { appendLine, follow } from './stream.ts';

export function logsPanel(scope: Scope, app: string): HTMLElement {
  const toggle = h('input', { type: 'checkbox', checked: true, 'data-test': 'logs-follow' });
  const state = h('span', { class: 'muted', 'data-test': 'logs-state' }, 'connecting…');
  const output = h('pre', { class: 'output logs', 'data-test': 'logs' });
  let opened = false;
  follow(
    scope,
    `/api/apps/${encodeURIComponent(app)}/logs?tail=100`,
    {
      line: (data) => appendLine(output, String(data), 2000, toggle.checked),
      error: (data) => {
        state.textContent = `stopped: ${(data as { message?: string }).message ?? 'the log stream ended'}`;
      },
    },
    (s) => {
      // A reconnected stream starts with the tail again: show it once.
      if (s === 'open' && opened) output.replaceChildren();
      if (s === 'open') opened = true;
      state.textContent = s === 'open' ? 'live' : 'reconnecting…';
    },
  );
  toggle.addEventListener('change', () => {
    if (toggle.checked) output.scrollTop = output.scrollHeight;
  });
  return h('section', { class: 'panel' }, h('div', { class: 'section-head' }, h('h2', {}, 'Logs'), state, h('label', { class: 'follow' }, toggle, ' follow')), output);
}
