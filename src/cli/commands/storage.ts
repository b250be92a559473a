// storage:mount, storage:unmount, storage:list: host folders bind-mounted into an app's
// containers. Mounting exposes the server's files, so only admin keys may change mounts.
import path from 'node:path';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import type { Platform } from '../../platform/platform.ts';
import { callerName, defineCommand, type Command, type CommandContext } from '../command.ts';
import type { AppRecord } from '../../state/app-store.ts';

// The MOUNT argument's form, which its name alone does not say.
const MOUNT_USAGE = 'APP /HOST:/CONTAINER[:ro] [--no-restart]';

export const storageCommands: Command[] = [
  defineCommand({
    name: 'storage:mount',
    args: ['APP', 'MOUNT'],
    flags: { 'no-restart': 'boolean' },
    usage: MOUNT_USAGE,
    summary: "bind-mount a server folder into the app's containers; restarts the app",
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, args: [text], flags, daemon }) {
      const mount = parseMount(text);
      await change(ctx, app, daemon, !flags['no-restart'], (a) => {
        const target = mount.split(':')[1];
        if (a.mounts.some((m) => m.split(':')[1] === target)) throw new UserError('mount_exists', `${app} already mounts something at ${target}`, { hint: `remove it first: storage:unmount ${app} ${a.mounts.find((m) => m.split(':')[1] === target)}` });
        a.mounts.push(mount);
      });
    },
  }),
  defineCommand({
    name: 'storage:unmount',
    args: ['APP', 'MOUNT'],
    flags: { 'no-restart': 'boolean' },
    usage: MOUNT_USAGE,
    summary: 'remove a bind mount; restarts the app',
    scope: 'admin',
    needsDaemon: true,
    async run(ctx, { app, args: [text], flags, daemon }) {
      const mount = parseMount(text);
      await change(ctx, app, daemon, !flags['no-restart'], (a) => {
        if (!a.mounts.includes(mount)) throw new UserError('mount_not_found', `${app} has no mount ${mount}`, { hint: `\`storage:list ${app}\` shows its mounts` });
        a.mounts = a.mounts.filter((m) => m !== mount);
      });
    },
  }),
  defineCommand({
    name: 'storage:list',
    args: ['APP'],
    summary: "list the app's bind mounts",
    scope: 'app',
    async run(ctx, { app }) {
      const record = ctx.state.apps.require(app);
      ctx.out.section(`${record.name} mounts`);
      ctx.out.line(record.mounts.length ? record.mounts.join('\n') : '(none)');
    },
  }),
];

/** `/host:/container[:ro|:rw]`, both absolute and normalised; returned in canonical form. */
export function parseMount(text: string): string {
  const parts = text.split(':');
  const bad = (why: string) =>
    new UserError('invalid_mount', `"${text}" is not a mount: ${why}`, { hint: 'give /host/path:/container/path, optionally :ro for read-only' });
  if (parts.length < 2 || parts.length > 3) throw bad('expected /host/path:/container/path[:ro]');
  const [host, container, mode] = parts as [string, string, string?];
  for (const p of [host, container]) {
    if (!p.startsWith('/')) throw bad(`${p || 'an empty path'} is not absolute`);
    if (p.split('/').includes('..')) throw bad(`${p} contains ..`);
    if (/[,\0\n]/.test(p)) throw bad(`${p} contains a comma, NUL or newline`);
  }
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw bad(`the mode "${mode}" is not ro or rw`);
  const normal = (p: string) => (path.posix.normalize(p).replace(/\/$/, '') || '/');
  if (normal(container) === '/') throw bad('the container path cannot be /');
  return `${normal(host)}:${normal(container)}${mode === 'ro' ? ':ro' : ''}`;
}

async function change(ctx: CommandContext, app: string, daemon: () => Platform, restart: boolean, fn: (a: AppRecord) => void): Promise<void> {
  ctx.state.apps.require(app);
  await daemon().processes.changeSettings(app, fn, { restart, out: ctx.out });
  log.info('mounts_changed', { app, mounts: ctx.state.apps.require(app).mounts, by: callerName(ctx) });
  ctx.out.step(`Mounts of ${app}: ${ctx.state.apps.require(app).mounts.join(', ') || '(none)'}`);
}
