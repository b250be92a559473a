// The live deploy panel: while a push or deploy of the app runs, its output as the pusher sees it
// (opened by itself when one starts); "no deploy running" otherwise.
import { clock, h, type Scope } from './dom.ts';
import { appendLine, follow } from './stream.ts';
import type { DeployEnd, DeployStart } from './types.ts';

/** The panel; `onEnd` hears a finished deploy or a refused stream (the app view re-reads the app then). */
export function deployPanel(scope: Scope, app: string, onEnd: () => void): HTMLElement {
  const status = h('span', { class: 'status', 'data-test': 'deploy-status' }, 'Connecting…');
  const output = h('pre', { class: 'output', 'data-test': 'deploy-output', 'aria-live': 'polite' });
  // The status sits in the summary line: readable while the panel is closed.
  const panel = h('details', { class: 'panel', 'data-test': 'deploy-panel' }, h('summary', {}, h('h2', {}, 'Deploy'), ' ', status), output);
  let running = false;
  /** What the status said before the stream dropped, shown again once it is back. */
  let settled: [string, string] = ['No deploy running', 'idle'];
  const say = (text: string, state: string) => {
    status.textContent = text;
    panel.dataset.state = state;
    if (state !== 'retrying') settled = [text, state];
  };
  follow(
    scope,
    `/api/apps/${encodeURIComponent(app)}/deploys/live`,
    {
      start: (data) => {
        const start = data as DeployStart;
        running = true;
        output.replaceChildren();
        panel.open = true;
        say(`Deploying: started by ${start.by} at ${clock(start.startedAt)}`, 'running');
      },
      line: (data) => appendLine(output, String(data)),
      end: (data) => {
        const end = data as DeployEnd;
        running = false;
        if (end.ok) say(end.release === undefined ? 'Deploy finished' : `Deployed release v${end.release}`, 'ok');
        else say(`Deploy failed: ${end.error ?? 'see the output'}`, 'failed');
        onEnd();
      },
      idle: () => {
        if (running) {
          // Idle after a reconnect while one ran: its end came while the connection was down.
          running = false;
          say('The deploy ended while the connection was down: the releases show its result', 'ended');
          onEnd();
        } else if (!output.childNodes.length) say('No deploy running', 'idle');
      },
    },
    (state) => {
      if (state !== 'open' && !running) say('Deploy stream interrupted; reconnecting…', 'retrying');
      // Refused: the app may be gone; reading it again tells.
      if (state === 'closed') onEnd();
      if (state === 'open' && panel.dataset.state === 'retrying') say(...settled);
    },
  );
  return panel;
}
