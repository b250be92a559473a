// ps:scale, ps:report, ps:restart, ps:stop, ps:start: an app's processes.
import { UserError } from '../../errors.ts';
import { PROCESS_TYPE_PATTERN } from '../../orchestrator/procfile.ts';
import { currentRelease } from '../../state/app-store.ts';
import { usageOf } from '../args.ts';
import { byName, defineCommand, type Command } from '../command.ts';
import { table } from '../../ui/output.ts';

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
      const record = ctx.state.apps.require(app);
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
      await daemon().processes.scale(app, counts, ctx.out, byName(ctx));
    },
  }),
  defineCommand({
    name: 'ps:report',
    args: ['APP'],
    summary: "show an app's containers, their state and release",
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      ctx.state.apps.require(app);
      const report = await daemon().processes.report(app);
      ctx.out.section(`${app} processes`);
      ctx.out.line(`Status:    ${report.status}${report.release !== undefined ? ` (release v${report.release})` : ''}`);
      ctx.out.line(`Wanted:    ${report.wanted.join(' ') || '(none)'}`);
      const record = ctx.state.apps.require(app);
      for (const [type, p] of Object.entries(record.placement)) ctx.out.line(`Placement: ${type}: ${[...p.constraints, ...p.spread.map((x) => `spread=${x}`)].join(' ')}`);
      const probation = report.probation;
      if (probation) {
        const left = Math.max(0, Math.ceil((probation.until - Date.now()) / 1000));
        const warm = probation.warm.length ? `; kept warm: ${probation.warm.map((w) => `${w.name} (v${w.release ?? '?'})`).join(', ')}` : '';
        ctx.out.line(`Probation: v${probation.release} until ${new Date(probation.until).toISOString()} (${left} s left)${warm}`);
      }
      // On the swarm scheduler each dyno is a task: its node shows, and its container is the task's.
      const onNodes = report.containers.some((c) => c.node !== undefined);
      const rows = report.containers.map((c) => [c.dyno, c.state, c.release, String(c.restarts), ...(onNodes ? [c.node ?? '-'] : []), c.address, c.container]);
      const head = ['DYNO', 'STATE', 'RELEASE', 'RESTARTS', ...(onNodes ? ['NODE'] : []), 'ADDRESS', onNodes ? 'TASK' : 'CONTAINER'];
      ctx.out.line(rows.length ? table([head, ...rows]) : 'no containers');
    },
  }),
  defineCommand({
    name: 'ps:set',
    args: ['APP', 'TYPE', 'PROPERTY', '[VALUE...]'],
    flags: { 'no-restart': 'boolean' },
    summary: 'set where a process type runs on the swarm scheduler: ps:set APP TYPE placement [CONSTRAINT...] [spread=node.labels.KEY]',
    help: 'PROPERTY is placement. Each CONSTRAINT is Swarm\'s: node.labels.KEY==VALUE, node.hostname!=NAME, node.role==manager ... (nodes:label sets node labels); spread=node.labels.KEY spreads the tasks evenly over its values. Without values the type may run anywhere again. The app restarts to apply it, unless --no-restart. For admin keys; only the swarm scheduler reads it.',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, args: [type, property, values], flags, daemon }) {
      ctx.state.apps.require(app);
      if (!PROCESS_TYPE_PATTERN.test(type)) throw new UserError('bad_arguments', `ps:set: "${type}" is not a process type`, { exitCode: 2 });
      if (property !== 'placement') throw new UserError('bad_arguments', `ps:set: "${property}" is not a property of a process type`, { hint: 'the one there is: placement', exitCode: 2 });
      const placement = parsePlacement(values);
      // On the docker scheduler placement changes nothing that runs: no restart.
      const onSwarm = daemon().processes.scheduler === 'swarm';
      await daemon().processes.changeSettings(
        app,
        (a) => {
          if (placement.constraints.length === 0 && placement.spread.length === 0) delete a.placement[type];
          else a.placement[type] = placement;
        },
        { restart: onSwarm && !flags['no-restart'], out: ctx.out },
      );
      const text = [...placement.constraints, ...placement.spread.map((s) => `spread=${s}`)].join(' ');
      ctx.out.step(text ? `${app} ${type} runs where ${text}` : `${app} ${type} may run on any node`);
      if (!onSwarm) ctx.out.detail('stored; placement applies on the swarm scheduler (berth serve --scheduler swarm): nothing restarted on this one (docker)');
    },
  }),
  defineCommand({
    name: 'ps:restart',
    args: ['APP'],
    summary: 'start all processes of the current release afresh (and apply deferred config)',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await daemon().processes.restart(app, { by: byName(ctx), out: ctx.out });
    },
  }),
  defineCommand({
    name: 'ps:stop',
    args: ['APP'],
    summary: 'stop all processes; nothing runs until ps:start or a deploy',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await daemon().processes.stop(app, ctx.out);
    },
  }),
  defineCommand({
    name: 'ps:start',
    args: ['APP'],
    summary: 'start the processes of the current release',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, daemon }) {
      await daemon().processes.start(app, ctx.out);
    },
  }),
];

/**
 * A node attribute Swarm places by, compared: node.labels.zone==a, node.role!=manager,
 * engine.labels.disk==ssd. As swarmkit's constraint parser takes them: a key of letters, digits,
 * `-`, `_` and `.`; `==` or `!=`; a value of letters, digits and `: - _ . * ( ) ? + [ ] \ ^ $ | /`
 * (no comma, no `=`, `!`, `<`, `>` or `~`, which it keeps for operators).
 */
const CONSTRAINT = /^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)|engine\.labels\.[A-Za-z0-9_.-]+)(==|!=)[A-Za-z0-9:_.*()?+[\]\\^$|/-]+$/;
const SPREAD = /^spread=(node\.labels\.[A-Za-z0-9_.-]+|engine\.labels\.[A-Za-z0-9_.-]+)$/;
/** At most this many constraints and spreads per process type, each at most PLACEMENT_MAX_LENGTH characters. */
const PLACEMENT_MAX_WORDS = 16;
const PLACEMENT_MAX_LENGTH = 200;

/** The words of ps:set's placement: constraints and spread=DESCRIPTOR, each checked. */
export function parsePlacement(words: readonly string[]): { constraints: string[]; spread: string[] } {
  const constraints: string[] = [];
  const spread: string[] = [];
  if (words.length > PLACEMENT_MAX_WORDS) {
    throw new UserError('bad_placement', `${words.length} placement words: at most ${PLACEMENT_MAX_WORDS} per process type`, { hint: 'label the nodes (nodes:label) so fewer constraints select them', exitCode: 2 });
  }
  for (const word of words) {
    if (word.length > PLACEMENT_MAX_LENGTH) {
      throw new UserError('bad_placement', `a placement word of ${word.length} characters: at most ${PLACEMENT_MAX_LENGTH}`, { hint: 'use shorter node labels (nodes:label)', exitCode: 2 });
    }
    const m = SPREAD.exec(word);
    if (m) spread.push(m[1]!);
    else if (CONSTRAINT.test(word)) constraints.push(word);
    else {
      throw new UserError('bad_placement', `"${word}" is not a placement constraint nor spread=node.labels.KEY`, {
        hint: 'such as: node.labels.zone==a, node.role!=manager, node.hostname==NAME, spread=node.labels.zone (no spaces around == and !=)',
        exitCode: 2,
      });
    }
  }
  return { constraints, spread };
}
