// ssh-keys:add, ssh-keys:list, ssh-keys:scope, ssh-keys:remove: who may push and run commands.
// A scope names apps by id (an app not created yet by its name, until it is); a change applies
// to open connections from their next command, and a removed key's connections are closed.
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.ts';
import { scopeNames, type AppScope } from '../../git/key-store.ts';
import { log } from '../../log.ts';
import { callerName, defineCommand, type Command, type CommandContext } from '../command.ts';
import { table } from '../../ui/output.ts';

export const sshKeyCommands: Command[] = [
  defineCommand({
    name: 'ssh-keys:add',
    args: ['NAME', '[KEYFILE|-]'],
    flags: { apps: 'APP,APP', services: 'boolean' },
    summary: 'allow a public key to push and run commands',
    help: 'KEYFILE is a public key file (such as ~/.ssh/id_ed25519.pub); - or nothing reads it from standard input.\nOver SSH, pipe the key in: ssh -p 2222 berth@HOST ssh-keys:add NAME < key.pub\nWithout --apps the key is an admin key; with it, the key may use those apps only.\nWith --apps and --services it may also create backing services (postgres:create ...) and manage the ones linked to its apps.',
    scope: 'admin',
    async run(ctx, { args: [name, file = '-'], flags }) {
      checkServicesFlag(flags);
      const text = await readKeyInput(ctx, file);
      const record = await ctx.state.keys.add(name, text, scopesOf(ctx, flags.apps), { services: flags.services });
      log.info('ssh_key_added', { name: record.name, fingerprint: record.fingerprint, by: callerName(ctx) });
      ctx.out.step(`Added key ${record.name} (${record.fingerprint})${record.apps ? ` for ${namesOf(ctx, record.apps).join(', ')}${record.services ? ', and may create services' : ''}` : ' as an admin key'}`);
    },
  }),
  defineCommand({
    name: 'ssh-keys:list',
    args: [],
    summary: 'list the keys that may push and run commands',
    help: 'SCOPE is "admin" (everything) or the apps a key is limited to (ssh-keys:add --apps); an app destroyed since shows as (destroyed app NAME), and a new app of that name is not the key\'s.',
    scope: 'admin',
    async run(ctx) {
      const keys = ctx.state.keys.list();
      if (keys.length === 0) {
        ctx.out.line('no keys; add one with `ssh-keys:add NAME KEYFILE`');
        return;
      }
      const rows = keys.map((k) => [k.name, k.fingerprint, k.apps ? `apps: ${namesOf(ctx, k.apps).join(',')}${k.services ? ' +services' : ''}` : 'admin']);
      ctx.out.line(table([['NAME', 'FINGERPRINT', 'SCOPE'], ...rows]));
    },
  }),
  defineCommand({
    name: 'ssh-keys:scope',
    args: ['NAME'],
    flags: { apps: 'APP,APP', admin: 'boolean', services: 'boolean' },
    usage: 'NAME --apps APP,APP [--services] | NAME --admin',
    summary: "change a key's scope: limit it to some apps, or make it an admin key",
    help: 'Connections open with the key use the new scope from their next command or push.',
    scope: 'admin',
    async run(ctx, { args: [name], flags }) {
      if ((flags.apps === undefined) === !flags.admin) {
        throw new UserError('bad_arguments', 'ssh-keys:scope: give either --apps APP,APP or --admin', { hint: `such as: ssh-keys:scope ${name} --apps shop`, exitCode: 2 });
      }
      checkServicesFlag(flags);
      const record = await ctx.state.keys.setScope(name, flags.admin ? undefined : scopesOf(ctx, flags.apps), { services: flags.services });
      log.info('ssh_key_scope_changed', { name: record.name, fingerprint: record.fingerprint, admin: !record.apps, by: callerName(ctx) });
      ctx.out.step(`Key ${record.name} ${record.apps ? `may use ${namesOf(ctx, record.apps).join(', ')} only${record.services ? ', and may create services' : ''}` : 'is an admin key'}`);
    },
  }),
  defineCommand({
    name: 'ssh-keys:remove',
    args: ['NAME'],
    summary: "remove a key and close its open connections",
    help: 'Its open SSH connections (a multiplexed ControlMaster too) are closed, pushes and commands running on them with them.',
    scope: 'admin',
    async run(ctx, { args: [name] }) {
      const record = await ctx.state.keys.remove(name);
      log.info('ssh_key_removed', { name: record.name, fingerprint: record.fingerprint, by: callerName(ctx) });
      ctx.out.step(`Removed key ${record.name} (${record.fingerprint})`);
    },
  }),
];

// --services widens a key limited to apps; an admin key creates services anyway.
function checkServicesFlag(flags: { apps?: string | undefined; services: boolean }): void {
  if (flags.services && flags.apps === undefined) {
    throw new UserError('bad_arguments', '--services goes with --apps: an admin key may create services anyway', { hint: 'such as: ssh-keys:add NAME KEYFILE --apps shop --services', exitCode: 2 });
  }
}

/** `--apps a,b` as scopes: an app that exists by its id, a name not created yet by its name. */
function scopesOf(ctx: CommandContext, list: string | undefined): AppScope[] | undefined {
  if (list === undefined) return undefined;
  return list
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean)
    .map((name) => {
      const app = ctx.state.apps.get(name);
      return app ? { name, id: app.id } : { name };
    });
}

function namesOf(ctx: CommandContext, apps: readonly AppScope[]): string[] {
  return scopeNames(apps, (id) => ctx.state.apps.byId(id)?.name);
}

async function readKeyInput(ctx: CommandContext, file: string): Promise<string> {
  if (file === '-') return (await ctx.readStdin()).toString('utf8');
  if (ctx.caller.kind === 'ssh') {
    throw new UserError('key_file_over_ssh', 'over SSH the key is read from standard input, not from a file on the server', {
      hint: 'run: ssh -p PORT berth@HOST ssh-keys:add NAME < key.pub',
    });
  }
  try {
    return await fs.readFile(path.resolve(ctx.cwd, file), 'utf8');
  } catch (e) {
    throw new UserError('key_file_unreadable', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
