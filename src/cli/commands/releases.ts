// releases, releases:rollback, releases:output: an app's numbered, immutable releases.
import { UserError } from '../../errors.ts';
import { byName, defineCommand, type Command } from '../command.ts';
import { table } from '../../ui/output.ts';

export const releaseCommands: Command[] = [
  defineCommand({
    name: 'releases',
    args: ['APP'],
    summary: "list an app's releases, newest first",
    scope: 'app',
    async run(ctx, { app }) {
      const record = ctx.state.apps.require(app);
      ctx.out.section(`${record.name} releases`);
      if (record.releases.length === 0) {
        ctx.out.line('no releases yet');
        return;
      }
      const releases = ctx.daemon?.releases;
      const rows: string[][] = [];
      for (const r of [...record.releases].sort((a, b) => b.number - a.number)) {
        const image = releases ? ((await releases.imageExists(r.image)) ? r.image : `${r.image} (pruned)`) : r.image;
        rows.push([`v${r.number}${r.number === record.current ? ' *' : ''}`, r.description, r.builder, r.createdBy, r.createdAt.replace(/\.\d+Z$/, 'Z'), image]);
      }
      ctx.out.line(table([['RELEASE', 'DESCRIPTION', 'BUILDER', 'BY', 'CREATED', 'IMAGE'], ...rows]));
      ctx.out.line('* current');
    },
  }),
  defineCommand({
    name: 'releases:rollback',
    args: ['APP', '[N]'],
    summary: 'bring back release N (default: the previous) as a new release, without rebuilding',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [number], daemon }) {
      const n = number === undefined ? undefined : releaseNumber(this.name, number);
      await daemon().releases.rollback(app, n, { by: byName(ctx), out: ctx.out });
    },
  }),
  defineCommand({
    name: 'releases:output',
    args: ['APP', '[N]'],
    summary: 'show the build and deploy output of release N (default: the current one)',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [number], daemon }) {
      const record = ctx.state.apps.require(app);
      const n = number === undefined ? record.current : releaseNumber(this.name, number);
      if (n === null) throw new UserError('no_release', `${record.name} has no release yet`);
      const text = await daemon().releases.output(record.name, n);
      if (text === undefined) throw new UserError('no_release_output', `no output is kept for v${n} of ${record.name}`, { hint: 'output is kept for releases made by a push; config changes and rollbacks have none' });
      ctx.out.raw(text);
    },
  }),
];

function releaseNumber(command: string, text: string): number {
  const m = /^v?(\d{1,9})$/.exec(text);
  if (!m) throw new UserError('bad_arguments', `${command}: "${text}" is not a release number`, { hint: 'give it as 3 or v3', exitCode: 2 });
  return Number(m[1]);
}
