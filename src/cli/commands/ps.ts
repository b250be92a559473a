// ps:scale, ps:report, ps:restart, ps:stop, ps:start: an app's processes.
import { UserError } from '../../errors.ts';
import { restart, scale, start, stop, wantedDynos } from '../../orchestrator/app-operations.ts';
import { processContainers, WEB_PORT } from '../../orchestrator/deployment.ts';
import { LABEL } from '../../orchestrator/engine.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import { currentRelease } from '../../state/app-store.ts';
import { usageOf } from '../args.ts';
import { byName, defineCommand, type Command } from '../command.ts';
import { table } from '../output.ts';

/** Most containers of one process type ps:scale allows. */
export const MAX_SCALE = 100;

export const psCommands: Command[] = [
  defineCommand({
    name: 'ps:scale',
    args: ['APP', '[TYPE=COUNT...]'],
    summary: 'set how many containers of each process type run (without counts: show them)',
    help: 'Only web containers are routed. A type not scaled runs once if it is web, else not at all.',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [assignments], daemon }) {
      const record = ctx.services.apps.require(app);
      if (assignments.length === 0) {
        const current = currentRelease(record);
        const types = new Set([...Object.keys(current?.processTypes ?? {}), ...Object.keys(record.formation)]);
        ctx.out.section(`${app} scale`);
        ctx.out.line(table([['TYPE', 'COUNT'], ...[...types].sort().map((t) => [t, String(record.formation[t] ?? (t === 'web' ? 1 : 0))])]));
        return;
      }
      const counts: Record<string, number> = {};
      for (const w of assignments) {
        const m = /^([^=]+)=(\d+)$/.exec(w);
        if (!m || !PROCESS_TYPE_PATTERN.test(m[1]!) || Number(m[2]) > MAX_SCALE) {
          throw new UserError('bad_arguments', `${this.name}: "${w}" is not TYPE=COUNT (COUNT from 0 to ${MAX_SCALE})`, { hint: `usage: ${this.name} ${usageOf(this)}, such as web=2 worker=1`, exitCode: 2 });
        }
        counts[m[1]!] = Number(m[2]);
      }
      await scale(daemon(), app, counts, ctx.out);
    },
  }),
  defineCommand({
    name: 'ps:report',
    args: ['APP'],
    summary: "show an app's containers, their state and release",
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      const record = ctx.services.apps.require(app);
      const orch = daemon();
      const current = currentRelease(record);
      const containers = (await processContainers(orch.engine, app)).sort((a, b) => (a.labels[LABEL.dyno] ?? '').localeCompare(b.labels[LABEL.dyno] ?? ''));
      ctx.out.section(`${app} processes`);
      ctx.out.line(`Status:    ${record.stopped ? 'stopped' : current ? 'deployed' : 'not deployed'}${current ? ` (release v${current.number})` : ''}`);
      ctx.out.line(`Wanted:    ${wantedDynos(record).join(' ') || '(none)'}`);
      // Probation (issue 17): the release serving on trial, until when, and the old one kept warm.
      const probation = orch.probation(app);
      if (probation) {
        const left = Math.max(0, Math.ceil((probation.until - Date.now()) / 1000));
        const warm = probation.warm.length ? `; kept warm: ${probation.warm.map((w) => `${w.name} (v${w.release ?? '?'})`).join(', ')}` : '';
        ctx.out.line(`Probation: v${probation.release} until ${new Date(probation.until).toISOString()} (${left} s left)${warm}`);
      }
      const rows = containers.map((c) => [
        c.labels[LABEL.dyno] ?? '?',
        c.status,
        `v${c.labels[LABEL.release] ?? '?'}`,
        String(c.restartCount),
        c.labels[LABEL.process] === 'web' && c.ip ? `${c.ip}:${WEB_PORT}` : c.ip ?? '-',
        c.name,
      ]);
      ctx.out.line(rows.length ? table([['DYNO', 'STATE', 'RELEASE', 'RESTARTS', 'ADDRESS', 'CONTAINER'], ...rows]) : 'no containers');
    },
  }),
  defineCommand({
    name: 'ps:restart',
    args: ['APP'],
    summary: 'start all processes of the current release afresh (and apply deferred config)',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await restart(daemon(), app, { by: byName(ctx), out: ctx.out });
    },
  }),
  defineCommand({
    name: 'ps:stop',
    args: ['APP'],
    summary: 'stop all processes; nothing runs until ps:start or a deploy',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await stop(daemon(), app, ctx.out);
    },
  }),
  defineCommand({
    name: 'ps:start',
    args: ['APP'],
    summary: 'start the processes of the current release',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await start(daemon(), app, ctx.out);
    },
  }),
];
