// Key scopes in the one registry every surface uses: a key limited to apps reaches app commands
// of those apps only and no admin command, whatever commands exist; each refusal says what was
// refused and is logged with the key's name. (End to end over SSH: e2e-keys.test.ts.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { CommandContext } from '../src/cli/command.ts';
import type { State } from '../src/platform/state.ts';
import { MemoryOutput } from '../src/ui/output.ts';
import { COMMANDS, runCommand } from '../src/cli/registry.ts';
import { defaultConfig } from '../src/config.ts';
import type { KeyRecord } from '../src/git/key-store.ts';
import { setLogSink } from '../src/log.ts';
import { loadState } from '../src/platform/state.ts';
import { tempDir } from './helpers/temp.ts';

const scoped: KeyRecord = { name: 'deployer', fingerprint: 'SHA256:x', publicKey: 'ssh-ed25519 AAAA', addedAt: '2026-01-01T00:00:00Z', apps: [{ name: 'mine' }] };

async function services(): Promise<State> {
  const dir = tempDir('scope');
  return loadState({ ...defaultConfig(), dataDir: dir });
}

function context(svc: State, key: KeyRecord): { ctx: CommandContext; out: MemoryOutput } {
  const out = new MemoryOutput();
  const ctx: CommandContext = {
    out,
    caller: { kind: 'ssh', key, address: '192.0.2.7' },
    state: svc, daemon: undefined,
    cwd: '/',
    signal: new AbortController().signal,
    readStdin: async () => Buffer.alloc(0),
  };
  return { ctx, out };
}

test('every admin command and every app command on another app is refused to a scoped key before it runs, and logged with its name', async () => {
  const svc = await services();
  const logged: Record<string, unknown>[] = [];
  setLogSink((line) => logged.push(JSON.parse(line) as Record<string, unknown>));
  try {
    const restricted = COMMANDS.filter((c) => c.scope !== 'any');
    assert.ok(restricted.some((c) => c.scope === 'admin') && restricted.some((c) => c.scope === 'app'));
    for (const command of restricted) {
      logged.length = 0;
      const { ctx, out } = context(svc, scoped);
      const code = await runCommand([command.name, 'theirs', 'ARG'], ctx);
      assert.equal(code, 1, `${command.name} is refused`);
      const what = command.scope === 'admin' ? `may not run ${command.name}: it is for admin keys; ask the server's admin` : `may not run ${command.name} on theirs: it is limited to the apps mine`;
      assert.ok(out.text().includes(`key "deployer" ${what}`), `${command.name}: ${out.text()}`);
      const entry = logged.find((l) => l.event === 'command_refused');
      assert.equal(entry?.key, 'deployer');
      assert.equal(entry?.command, command.name);
    }
    assert.equal(svc.apps.list().length, 0, 'no refused command changed anything');
  } finally {
    setLogSink((line) => process.stderr.write(line + '\n'));
  }
});

test('a scoped key may create its own app and sees only its apps in apps:list', async () => {
  const svc = await services();
  setLogSink(() => undefined);
  try {
    await svc.apps.create('theirs');
    const { ctx, out } = context(svc, scoped);
    assert.equal(await runCommand(['apps:create', 'mine'], ctx), 0, out.text());
    // The SSH server looks the key up for each command: by now its scope holds the app's id.
    const listed = context(svc, { ...scoped, apps: [{ name: 'mine', id: svc.apps.get('mine')!.id }] });
    assert.equal(await runCommand(['apps:list'], listed.ctx), 0);
    assert.match(listed.out.text(), /^mine\s/m);
    assert.doesNotMatch(listed.out.text(), /theirs/);
  } finally {
    setLogSink((line) => process.stderr.write(line + '\n'));
  }
});

test('the commands that reach beyond one app are declared admin-only, and a scoped key reads its limits with resource:report', () => {
  const scopeOf = (name: string) => COMMANDS.find((c) => c.name === name)?.scope;
  for (const name of ['resource:limit', 'resource:limit-clear', 'storage:mount', 'storage:unmount', 'ssh-keys:add', 'ssh-keys:list', 'ssh-keys:scope', 'ssh-keys:remove', 'apps:destroy', 'apps:rename', 'status', 'upgrade', 'nodes:list', 'nodes:join-command', 'nodes:label', 'nodes:drain', 'nodes:activate', 'ps:set']) {
    assert.equal(scopeOf(name), 'admin', name);
  }
  assert.equal(scopeOf('resource:report'), 'app');
  assert.equal(scopeOf('storage:list'), 'app');
});
