// The backing services' commands in Dokku's datastore vocabulary, made for every kind of
// SERVICE_KINDS (postgres:create, redis:link ...): a third kind is one module in
// src/services/kinds and gets all of them. A key limited to apps manages only the services of
// its apps (see mayManage); expose and backups are the admin's.
import { isIP } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { parseBytes } from '../../config.ts';
import { UserError } from '../../errors.ts';
import { checkImageReference } from '../../image-reference.ts';
import type { ServiceCaller } from '../../platform/service-service.ts';
import { SERVICE_KINDS } from '../../services/kinds/index.ts';
import type { ServiceKind } from '../../services/kinds/kind.ts';
import { table } from '../../ui/output.ts';
import { byName, defineCommand, isScoped, requireAdmin, type Command, type CommandContext } from '../command.ts';

export const serviceCommands: Command[] = SERVICE_KINDS.flatMap((kind) => commandsOf(kind));

/** The commands of one kind. */
export function commandsOf(kind: ServiceKind): Command[] {
  const k = kind.name;
  return [
    defineCommand({
      name: `${k}:create`,
      args: ['NAME'],
      flags: { image: 'IMAGE', memory: 'M' },
      summary: `create a ${k} service: its container, a volume for its data, a generated password`,
      help: `The image is --${k}-image of berth serve (default ${kind.defaultImage}), pulled on first use, unless --image names another.\n--memory limits its memory (such as 256m; default --container-memory, as apps; a key limited to apps may not ask for more).\nA key limited to apps may create services only when the admin allowed it (ssh-keys:add NAME KEY --apps APP --services), and only with the default image.`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], flags, daemon }) {
        if (flags.image !== undefined) {
          checkImageReference(flags.image, `${kind.defaultImage} or registry.example.com/${k}:tag`);
          if (isScoped(ctx)) requireAdmin(ctx, `choose the image of a service (--image)`, this.name);
        }
        let memory: number | undefined;
        if (flags.memory !== undefined) {
          memory = parseBytes(flags.memory);
          if (memory === undefined || memory < 6 * 1024 ** 2) throw new UserError('invalid_limit', `--memory ${flags.memory} is not a size of at least 6m`, { hint: 'such as 256m or 1g' });
        }
        const started = performance.now();
        const record = await daemon().services.create(k, name, { ...(flags.image ? { image: flags.image } : {}), ...(memory ? { memory } : {}), caller: callerOf(ctx), out: ctx.out });
        ctx.out.step(`${k} service ${record.name} accepts connections (${((performance.now() - started) / 1000).toFixed(1)} s)`);
        ctx.out.detail(`link it to an app: ${k}:link ${record.name} APP (sets ${kind.urlVariable})`);
      },
    }),
    defineCommand({
      name: `${k}:list`,
      args: [],
      summary: `list the ${k} services`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { daemon }) {
        const services = daemon().services;
        const records = services.list(k, callerOf(ctx));
        if (records.length === 0) {
          ctx.out.line(`no ${k} services; create one with ${k}:create NAME`);
          return;
        }
        const rows = [['NAME', 'STATUS', 'IMAGE', 'LINKS']];
        for (const r of records) rows.push([r.name, (await services.status(r)).status, r.image, r.links.map((l) => l.app).join(',') || '-']);
        ctx.out.line(table(rows));
      },
    }),
    defineCommand({
      name: `${k}:info`,
      args: ['NAME'],
      flags: { 'show-password': 'boolean' },
      summary: `show a ${k} service: status, version, volume, links, URL (password hidden unless --show-password)`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], flags, daemon }) {
        const services = daemon().services;
        const info = await services.info(services.require(k, name, callerOf(ctx), this.name), { showPassword: flags['show-password'] });
        const { record, status } = info;
        ctx.out.section(`${k} service ${record.name}`);
        const rows: Array<[string, string]> = [
          ['Status', status.running && status.startedAt ? `${status.status} (since ${new Date(status.startedAt).toISOString()}${status.restartCount ? `, restarted ${status.restartCount} times` : ''})` : status.status],
          ['Version', info.version ? `${info.version} (${record.image})` : record.image],
          ...(info.node ? [['Node', info.node] as [string, string]] : []),
          ['Volume', info.volume],
          ['Memory', info.limits.memory ? `${Math.round(info.limits.memory / 1024 ** 2)}m${record.memory ? '' : ' (the default)'}` : 'no limit'],
          ['Links', info.links.map((l) => `${l.app} (${l.variable})`).join(', ') || '-'],
          ['Exposed', record.exposedPort ? `${record.exposedHost ?? '127.0.0.1'}:${record.exposedPort}` : '-'],
          ['Host', `${info.host}:${kind.port} (on the networks of linked apps)`],
          ['URL', info.url],
          ['Created', `${record.createdAt} by ${record.createdBy}`],
        ];
        for (const [label, value] of rows) ctx.out.detail(`${(label + ':').padEnd(9)} ${value}`);
      },
    }),
    defineCommand({
      name: `${k}:restart`,
      args: ['NAME'],
      summary: `restart a ${k} service (a new container on the same volume) and wait until it accepts connections`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.restart(record, callerOf(ctx), ctx.out);
        ctx.out.step(`${k} service ${record.name} accepts connections`);
      },
    }),
    defineCommand({
      name: `${k}:logs`,
      args: ['NAME'],
      flags: { tail: 'boolean', num: 'N' },
      short: { t: 'tail', n: 'num' },
      summary: `show a ${k} service's logs; -t follows them`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], flags, daemon }) {
        const lines = flags.num === undefined ? 100 : Number(flags.num);
        if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) throw new UserError('bad_arguments', `${this.name}: -n takes a number of lines from 0 to 100000`, { exitCode: 2 });
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        if (!flags.tail) {
          ctx.out.raw(await services.logs(record, { tail: lines, timestamps: false }));
          return;
        }
        const subscription = await services.followLogs(record, { tail: lines, onData: (d) => ctx.out.raw(d) });
        await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve(), { once: true })));
        subscription.stop();
      },
    }),
    defineCommand({
      name: `${k}:destroy`,
      args: ['NAME'],
      flags: { force: 'boolean' },
      summary: `destroy a ${k} service and its data (refused while an app is linked to it)`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], flags, daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        if (!flags.force) throw new UserError('confirm', `${this.name} removes ${name}'s data for good: give --force to go ahead`, { hint: `${k}:export ${name} > ${name}.dump keeps a copy first`, exitCode: 2 });
        await services.destroy(record, callerOf(ctx), ctx.out);
      },
    }),
    defineCommand({
      name: `${k}:link`,
      args: ['NAME', 'APP'],
      flags: { alias: 'NAME' },
      summary: `link a ${k} service to an app: sets ${kind.urlVariable} (or ALIAS_URL) and restarts the app with zero downtime`,
      help: `The service joins the app's network, reachable there as berth-${k}-NAME; apps not linked to it cannot reach it.\nThe URL is a config change: a new release, deployed as any other (the old containers serve until the new ones pass their checks).`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name, app], flags, daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.link(record, app, { ...(flags.alias !== undefined ? { alias: flags.alias } : {}), caller: callerOf(ctx), out: ctx.out });
        ctx.out.step(`${app} is linked to ${k} service ${record.name}`);
      },
    }),
    defineCommand({
      name: `${k}:unlink`,
      args: ['NAME', 'APP'],
      summary: `unlink a ${k} service from an app: unsets its URL (a new release) and cuts the app off from it`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name, app], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.unlink(record, app, { caller: callerOf(ctx), out: ctx.out });
        ctx.out.step(`${app} is no longer linked to ${k} service ${record.name}`);
      },
    }),
    defineCommand({
      name: `${k}:expose`,
      args: ['NAME', 'PORT'],
      flags: { host: 'ADDRESS' },
      summary: `publish a ${k} service's port on this machine, 127.0.0.1 unless --host names another address (admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name, portText], flags, daemon }) {
        const port = Number(portText);
        if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new UserError('bad_arguments', `${this.name}: "${portText}" is not a port from 1 to 65535`, { exitCode: 2 });
        const host = flags.host;
        if (host !== undefined && !isIP(host)) throw new UserError('bad_arguments', `${this.name}: --host "${host}" is not an IP address`, { exitCode: 2, hint: 'such as 0.0.0.0 (every address of the server) or one of its addresses' });
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.expose(record, port, callerOf(ctx), ctx.out, host);
        ctx.out.step(`${k} service ${record.name} is reachable at ${host ?? '127.0.0.1'}:${port}`);
      },
    }),
    defineCommand({
      name: `${k}:unexpose`,
      args: ['NAME'],
      summary: `stop publishing a ${k} service's port (admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.expose(record, undefined, callerOf(ctx), ctx.out);
        ctx.out.step(`${k} service ${record.name} is reachable from its linked apps only`);
      },
    }),
    defineCommand({
      name: `${k}:connect`,
      args: ['NAME'],
      summary: `open ${k}'s client on a service: interactive with ssh -t, or reading commands from stdin`,
      help: `Interactive: ssh -t -p PORT berth@HOST ${k}:connect NAME\nPiped: echo "..." | ssh -p PORT berth@HOST ${k}:connect NAME\nExits with the client's status.`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        return services.connect(record, {
          ...(ctx.stdin ? { stdin: ctx.stdin() as Readable } : {}),
          ...(ctx.terminal ? { terminal: ctx.terminal } : {}),
          stdout: (d) => ctx.out.raw(d),
          stderr: (d) => (ctx.stderr ? ctx.stderr(d) : ctx.out.raw(d)),
          signal: ctx.signal,
        });
      },
    }),
    defineCommand({
      name: `${k}:export`,
      args: ['NAME'],
      summary: `write a dump of a ${k} service to stdout (${kind.dumpExtension}), streamed as the server makes it`,
      help: `ssh -p PORT berth@HOST ${k}:export NAME > NAME${kind.dumpExtension}; ${k}:import takes it back.`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        // Only the dump goes to stdout: it is redirected to a file.
        const out = new Writable({
          write(chunk: Buffer, _encoding, done) {
            const pending = ctx.out.raw(chunk);
            if (pending) pending.then(() => done(), done);
            else done();
          },
        });
        await services.exportTo(record, out, ctx.signal);
      },
    }),
    defineCommand({
      name: `${k}:import`,
      args: ['NAME'],
      summary: `load a dump from stdin into a ${k} service, replacing what it holds`,
      help: `ssh -p PORT berth@HOST ${k}:import NAME < NAME${kind.dumpExtension}`,
      scope: 'any',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        const input: Readable = ctx.stdin ? (ctx.stdin() as Readable) : Readable.from([await ctx.readStdin()]);
        await services.importFrom(record, input, { caller: callerOf(ctx), progress: (d) => (ctx.stderr ? ctx.stderr(d) : undefined), signal: ctx.signal });
        ctx.out.step(`Imported into ${k} service ${record.name}`);
      },
    }),
    defineCommand({
      name: `${k}:backup`,
      args: ['NAME'],
      summary: `back a ${k} service up now into the data dir (the newest backups kept; admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        const file = await services.backup(record, ctx.signal);
        ctx.out.step(`Backed up ${k} service ${record.name}: ${file.name} (${formatSize(file.bytes)})`);
      },
    }),
    defineCommand({
      name: `${k}:backups`,
      args: ['NAME'],
      summary: `list a ${k} service's backups and its schedule (admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        const { files, keep, schedule, next } = await services.backups(record);
        ctx.out.section(`${k} service ${record.name} backups (the newest ${keep} kept)`);
        ctx.out.detail(`Schedule: ${schedule ? `${schedule} (UTC), next at ${next?.toISOString() ?? '?'}` : `none (${k}:backup-schedule ${record.name} CRON)`}`);
        if (files.length === 0) {
          ctx.out.line('no backups yet');
          return;
        }
        ctx.out.line(table([['BACKUP', 'SIZE', 'CREATED'], ...files.map((f) => [f.name, formatSize(f.bytes), f.createdAt.toISOString()])]));
      },
    }),
    defineCommand({
      name: `${k}:backup-restore`,
      args: ['NAME', 'BACKUP'],
      summary: `load one of a ${k} service's backups into it, replacing what it holds (admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name, backupName], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        const file = await services.restoreBackup(record, backupName, { caller: callerOf(ctx), progress: (d) => (ctx.stderr ? ctx.stderr(d) : undefined), signal: ctx.signal });
        ctx.out.step(`Restored ${k} service ${record.name} from ${file.name}`);
      },
    }),
    defineCommand({
      name: `${k}:backup-schedule`,
      args: ['NAME', 'CRON...'],
      summary: `back a ${k} service up on a cron schedule, in UTC, such as "0 3 * * *" (admin keys only)`,
      help: 'CRON has five fields: minute hour day-of-month month day-of-week (quote it so that no shell expands the *). The schedule is kept and runs while berth runs.',
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name, cron], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        const expression = cron.join(' ');
        const next = await services.setBackupSchedule(record, expression, callerOf(ctx));
        ctx.out.step(`${k} service ${record.name} is backed up on "${expression}" (UTC); next at ${next?.toISOString()}`);
      },
    }),
    defineCommand({
      name: `${k}:backup-unschedule`,
      args: ['NAME'],
      summary: `stop a ${k} service's scheduled backups (admin keys only)`,
      scope: 'admin',
      needsDaemon: true,
      async run(ctx, { args: [name], daemon }) {
        const services = daemon().services;
        const record = services.require(k, name, callerOf(ctx), this.name);
        await services.setBackupSchedule(record, undefined, callerOf(ctx));
        ctx.out.step(`${k} service ${record.name} has no backup schedule`);
      },
    }),
  ];
}

function formatSize(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1024 ** 2 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

function callerOf(ctx: CommandContext): ServiceCaller {
  return { by: byName(ctx), ...(ctx.caller.kind === 'ssh' && ctx.caller.key.apps ? { key: ctx.caller.key } : {}) };
}
