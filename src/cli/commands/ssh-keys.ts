// ssh-keys:add, ssh-keys:list, ssh-keys:remove: who may push and run commands.
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../../errors.ts';
import { log } from '../../log.ts';
import { callerName, defineCommand, type Command, type CommandContext } from '../command.ts';
import { table } from '../../ui/output.ts';

export const sshKeyCommands: Command[] = [
  defineCommand({
    name: 'ssh-keys:add',
    args: ['NAME', '[KEYFILE|-]'],
    flags: { apps: 'APP,APP' },
    summary: 'allow a public key to push and run commands',
    help: 'KEYFILE is a public key file (such as ~/.ssh/id_ed25519.pub); - or nothing reads it from standard input.\nOver SSH, pipe the key in: ssh -p 2222 berth@HOST ssh-keys:add NAME < key.pub\nWithout --apps the key is an admin key; with it, the key may use those apps only.',
    scope: 'admin',
    async run(ctx, { args: [name, file = '-'], flags }) {
      const text = await readKeyInput(ctx, file);
      const apps = flags.apps?.split(',').map((a) => a.trim()).filter(Boolean);
      const record = await ctx.state.keys.add(name, text, apps);
      log.info('ssh_key_added', { name: record.name, fingerprint: record.fingerprint, by: callerName(ctx) });
      ctx.out.step(`Added key ${record.name} (${record.fingerprint})${record.apps ? ` for ${record.apps.join(', ')}` : ' as an admin key'}`);
    },
  }),
  defineCommand({
    name: 'ssh-keys:list',
    args: [],
    summary: 'list the keys that may push and run commands',
    help: 'SCOPE is "admin" (everything) or the apps a key is limited to (ssh-keys:add --apps).',
    scope: 'admin',
    async run(ctx) {
      const keys = ctx.state.keys.list();
      if (keys.length === 0) {
        ctx.out.line('no keys; add one with `ssh-keys:add NAME KEYFILE`');
        return;
      }
      const rows = keys.map((k) => [k.name, k.fingerprint, k.apps ? `apps: ${k.apps.join(',')}` : 'admin']);
      ctx.out.line(table([['NAME', 'FINGERPRINT', 'SCOPE'], ...rows]));
    },
  }),
  defineCommand({
    name: 'ssh-keys:remove',
    args: ['NAME'],
    summary: 'remove a key; it is refused from the next connection on',
    help: 'Connections already open with the key finish what they are doing.',
    scope: 'admin',
    async run(ctx, { args: [name] }) {
      const record = await ctx.state.keys.remove(name);
      log.info('ssh_key_removed', { name: record.name, fingerprint: record.fingerprint, by: callerName(ctx) });
      ctx.out.step(`Removed key ${record.name} (${record.fingerprint})`);
    },
  }),
];

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
