// The registry's handling of a command's declared words, once for every command: missing, extra,
// optional and variadic arguments, flags and their values, the APP's name, the key scope seen
// through flags, pass-through command lines, and the usage line built from the declaration.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { usageOf } from '../src/cli/args.ts';
import { defineCommand, type Command, type CommandContext } from '../src/cli/command.ts';
import type { State } from '../src/platform/state.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import { COMMANDS, invoke, runCommand } from '../src/cli/registry.ts';
import { defaultConfig } from '../src/config.ts';
import { UserError } from '../src/errors.ts';
import type { KeyRecord } from '../src/git/key-store.ts';
import { setLogSink } from '../src/log.ts';
import { loadState } from '../src/platform/state.ts';

const MINE_ID = 'id-of-mine';
const scoped: KeyRecord = { name: 'deployer', fingerprint: 'SHA256:x', publicKey: 'ssh-ed25519 AAAA', addedAt: '2026-01-01T00:00:00Z', apps: [{ name: 'mine', id: MINE_ID }] };
const dirs: string[] = [];
setLogSink(() => undefined);
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  setLogSink((line) => process.stderr.write(line + '\n'));
});

async function services(): Promise<State> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-args-'));
  dirs.push(dir);
  const svc = await loadState({ ...defaultConfig(), dataDir: dir });
  await svc.apps.create('mine', MINE_ID);
  return svc;
}

function context(svc: State, key?: KeyRecord): { ctx: CommandContext; out: MemoryOutput } {
  const out = new MemoryOutput();
  const caller = key ? ({ kind: 'ssh', key, address: '192.0.2.7' } as const) : ({ kind: 'local' } as const);
  return { ctx: { out, caller, state: svc, daemon: undefined, cwd: '/', signal: new AbortController().signal, readStdin: async () => Buffer.alloc(0) }, out };
}

/** A command that records what run() got. */
function recorder(spec: Omit<Command, 'run' | 'summary' | 'name' | 'scope'> & Partial<Pick<Command, 'scope'>>): { command: Command; seen: unknown[] } {
  const seen: unknown[] = [];
  const command: Command = {
    name: 't:x',
    summary: 'a test command',
    scope: 'app',
    ...spec,
    async run(_ctx, input) {
      seen.push({ app: input.app, args: input.args, flags: input.flags, otherFlags: input.otherFlags });
    },
  };
  return { command, seen };
}

/** The UserError `invoke` rejects with: its message, hint and exit status. */
async function refusal(command: Command, words: string[], key?: KeyRecord): Promise<{ message: string; hint: string | undefined; exitCode: number }> {
  const { ctx } = context(await services(), key);
  try {
    await invoke(command, words, ctx);
  } catch (e) {
    assert.ok(e instanceof UserError, String(e));
    return { message: e.message, hint: e.hint, exitCode: e.exitCode };
  }
  assert.fail(`${words.join(' ')} was accepted`);
}

test('declared arguments reach run in order: an APP apart, an absent optional one undefined, a trailing variadic the rest', async () => {
  const { ctx } = context(await services());
  const one = recorder({ args: ['APP', 'KEY', '[VALUE]'] });
  await invoke(one.command, ['mine', 'k'], ctx);
  await invoke(one.command, ['mine', 'k', 'v'], ctx);
  assert.deepEqual(one.seen.map((s) => (s as { args: unknown }).args), [['k', undefined], ['k', 'v']]);
  assert.equal((one.seen[0] as { app: string }).app, 'mine');

  const many = recorder({ args: ['APP', 'DOMAIN', '[DOMAIN...]'] });
  await invoke(many.command, ['mine', 'a.test'], ctx);
  await invoke(many.command, ['mine', 'a.test', 'b.test', 'c.test'], ctx);
  assert.deepEqual(many.seen.map((s) => (s as { args: unknown }).args), [['a.test', []], ['a.test', ['b.test', 'c.test']]]);

  const admin = recorder({ args: ['NAME', '[KEYFILE|-]'], scope: 'admin' });
  await invoke(admin.command, ['deploy'], ctx);
  assert.deepEqual(admin.seen[0], { app: undefined, args: ['deploy', undefined], flags: {}, otherFlags: [] });
});

test('a missing argument, one too many and an empty required list are refused with status 2 and the usage line', async () => {
  const { command } = recorder({ args: ['APP', 'KEY', '[VALUE]'], flags: { force: 'boolean' } });
  assert.deepEqual(await refusal(command, ['mine']), { message: 't:x: missing KEY', hint: 'usage: t:x APP KEY [VALUE] [--force]', exitCode: 2 });
  assert.deepEqual(await refusal(command, []), { message: 't:x: missing APP', hint: 'usage: t:x APP KEY [VALUE] [--force]', exitCode: 2 });
  assert.equal((await refusal(command, ['mine', 'k', 'v', 'extra'])).message, 't:x: unexpected argument "extra"');

  const list = recorder({ args: ['APP', 'KEY=VALUE...'] }).command;
  assert.deepEqual(await refusal(list, ['mine']), { message: 't:x: give at least one KEY=VALUE', hint: 'usage: t:x APP KEY=VALUE...', exitCode: 2 });
  // The APP's name is judged before the empty list, as config:set always did.
  assert.match((await refusal(list, ['Bad'])).message, /^invalid app name: "Bad"/);
  assert.equal((await refusal(recorder({ args: [] }).command, ['x'])).message, 't:x: unexpected argument "x"');
});

test('flags: switches are true or false, values come as --name v or --name=v, and bad ones are refused with status 2', async () => {
  const { ctx } = context(await services());
  const { command, seen } = recorder({ args: ['APP'], flags: { force: 'boolean', num: 'N' }, short: { n: 'num' } });
  await invoke(command, ['mine'], ctx);
  await invoke(command, ['--force', 'mine', '--num', '5'], ctx);
  await invoke(command, ['mine', '--num=7'], ctx);
  await invoke(command, ['mine', '-n', '9'], ctx);
  assert.deepEqual(seen.map((s) => (s as { flags: unknown }).flags), [
    { force: false, num: undefined },
    { force: true, num: '5' },
    { force: false, num: '7' },
    { force: false, num: '9' },
  ]);
  assert.deepEqual(await refusal(command, ['mine', '--bogus']), { message: 't:x: unknown flag --bogus', hint: 'usage: t:x APP [--force] [-n N]', exitCode: 2 });
  assert.equal((await refusal(command, ['mine', '--num'])).message, 't:x: --num needs a value');
  assert.equal((await refusal(command, ['mine', '-n'])).message, 't:x: --num needs a value');
  assert.equal((await refusal(command, ['mine', '--force=yes'])).message, 't:x: --force takes no value');
  // After --, a flag is an argument; a single-dash word that is not declared is one too.
  assert.equal((await refusal(command, ['mine', '--', '--force'])).message, 't:x: unexpected argument "--force"');
  assert.equal((await refusal(command, ['mine', '-x'])).message, 't:x: unexpected argument "-x"');

  const loose = recorder({ args: ['APP'], looseFlags: true });
  await invoke(loose.command, ['--checks-wait', 'mine', '--other=1'], ctx);
  assert.deepEqual((loose.seen[0] as { otherFlags: unknown }).otherFlags, ['--checks-wait', '--other=1']);
});

test('the APP is validated before run, and run never sees an invalid name', async () => {
  const { command, seen } = recorder({ args: ['APP'] });
  const refused = await refusal(command, ['Bad_Name']);
  assert.equal(refused.exitCode, 1);
  assert.match(refused.message, /^invalid app name: "Bad_Name"/);
  assert.equal(seen.length, 0);
});

test('a pass-through command gets everything after its APP as it came, after one optional --', async () => {
  const { ctx } = context(await services());
  const { command, seen } = recorder({ args: ['APP', '[CMD...]'], passThrough: true });
  await invoke(command, ['mine', 'echo', '--x', '-n', '1'], ctx);
  await invoke(command, ['mine', '--', 'ls', '--', '--help'], ctx);
  await invoke(command, ['mine'], ctx);
  assert.deepEqual(seen.map((s) => (s as { args: unknown }).args), [[['echo', '--x', '-n', '1']], [['ls', '--', '--help']], [[]]]);
  assert.equal(usageOf(command), 'APP [--] [CMD...]');
  assert.equal((await refusal(command, [])).message, 't:x: missing APP');
});

test('a key scoped to apps is checked against the parsed APP, even after flags, and before any usage error', async () => {
  const svc = await services();
  const own = context(svc, scoped);
  assert.equal(await runCommand(['config:show', '--format', 'json', 'mine'], own.ctx), 0, own.out.text());
  assert.equal(own.out.text(), '{}\n');
  const other = context(svc, scoped);
  assert.equal(await runCommand(['logs', '-n', '5', 'theirs'], other.ctx), 1);
  assert.match(other.out.text(), /key "deployer" may not run logs on theirs: it is limited to the apps mine/);

  const { command, seen } = recorder({ args: ['APP'], flags: { num: 'N' } });
  const beforeUsage = await refusal(command, ['theirs', '--bogus', 'extra'], scoped);
  assert.equal(beforeUsage.exitCode, 1);
  assert.match(beforeUsage.message, /may not run t:x on theirs/);
  assert.match((await refusal(command, ['--num', '5'], scoped)).message, /may not run t:x on that app/);
  const admin = recorder({ args: ['NAME'], scope: 'admin' }).command;
  assert.match((await refusal(admin, ['--bogus'], scoped)).message, /may not run t:x: it is for admin keys; ask the server's admin/);
  assert.equal(seen.length, 0);
});

test('needsDaemon: without a daemon the command meets the error where it calls daemon(), after its own checks', async () => {
  const svc = await services();
  let reached = '';
  const command = defineCommand({
    name: 't:daemon',
    summary: 'a test command',
    scope: 'app',
    args: ['APP', '[N]'],
    needsDaemon: true,
    async run(_ctx, input) {
      if (input.args[0] === 'bad') throw new UserError('bad_n', 'N is bad');
      reached = 'before';
      input.daemon();
      reached = 'after';
    },
  });
  await assert.rejects(invoke(command, ['mine', 'bad'], context(svc).ctx), /N is bad/);
  await assert.rejects(invoke(command, ['mine'], context(svc).ctx), (e: unknown) => e instanceof UserError && e.code === 'daemon_not_running');
  assert.equal(reached, 'before');
});

test('every registered command declares its words well: APP first for app commands, optional and variadic ones last', () => {
  for (const c of COMMANDS) {
    const args = c.args;
    if (args === undefined) {
      assert.equal(c.scope, 'any', `${c.name} takes its words unchecked, so it cannot be scoped to an app`);
      continue;
    }
    if (c.scope === 'app') assert.equal(args[0], 'APP', `${c.name}: an app command's first argument is APP`);
    const firstOptional = args.findIndex((a) => a.startsWith('['));
    if (firstOptional >= 0) assert.ok(args.slice(firstOptional).every((a) => a.startsWith('[')), `${c.name}: required after optional`);
    args.slice(0, -1).forEach((a) => assert.ok(!a.endsWith('...') && !a.endsWith('...]'), `${c.name}: only the last argument may be a list`));
    if (c.passThrough) assert.match(args.at(-1) ?? '', /\.\.\.\]?$/, `${c.name}: a pass-through command ends with a list`);
    assert.ok(!usageOf(c).includes('undefined'), c.name);
  }
  const help = (name: string) => usageOf(COMMANDS.find((c) => c.name === name)!);
  assert.equal(help('logs'), 'APP [-t] [-n N] [-p TYPE] [-q]');
  assert.equal(help('config:set'), 'APP KEY=VALUE... [--no-restart]');
  assert.equal(help('ssh-keys:add'), 'NAME [KEYFILE|-] [--apps APP,APP] [--services]');
  assert.equal(help('run'), 'APP [--] [CMD...]');
});
