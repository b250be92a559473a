// DockerEngine.removeNetwork on the real Docker engine checks whose the network is: another app's
// network is left alone with its containers attached (an app whose name once shortened to the same
// network name could otherwise cut off another app's linked services), its own goes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setLogSink } from '../src/log.ts';
import { DockerEngine } from '../src/orchestrator/docker-engine.ts';
import { LABEL } from '../src/orchestrator/engine.ts';

test("removeNetwork leaves another app's network and its containers alone, and logs it; the owner's goes", async (t) => {
  const lines: string[] = [];
  setLogSink((line) => lines.push(line));
  const instance = `test-netowner-${process.pid}`;
  const engine = await DockerEngine.connect(process.env.DOCKER_HOST ?? '/var/run/docker.sock', instance);
  const name = `berth-${instance}-shop`;
  const { default: Docker } = await import('dockerode');
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  t.after(async () => {
    await docker.getContainer(`${name}-c`).remove({ force: true }).catch(() => undefined);
    await docker.getNetwork(name).remove().catch(() => undefined);
  });
  await engine.ensureNetwork(name, { [LABEL.app]: 'shop' });
  const c = await engine.run({ name: `${name}-c`, image: 'berth-test/base:latest', env: {}, labels: {}, network: name, aliases: [], cmd: ['sleep', '3600'], restart: false });

  await engine.removeNetwork(name, { [LABEL.app]: 'blog' });
  const info = (await docker.getNetwork(name).inspect()) as { Containers?: Record<string, unknown> };
  assert.ok(Object.keys(info.Containers ?? {}).includes(c.id), "the other app's container stays attached");
  assert.ok(lines.some((l) => l.includes('network_remove_skipped') && l.includes('berth.app=shop')), lines.join('\n'));

  await engine.stopAndRemove(c.id, 0);
  await engine.removeNetwork(name, { [LABEL.app]: 'shop' });
  await assert.rejects(docker.getNetwork(name).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
});
