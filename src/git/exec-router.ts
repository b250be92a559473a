// Routes each SSH exec: a git push goes to receive-pack and, for the deploy branch, through
// the build-and-deploy pipeline as git's pre-receive step; anything else is an admin command.
import type { Services } from '../cli/command.ts';
import { StreamOutput } from '../cli/output.ts';
import { runCommand } from '../cli/registry.ts';
import { pushLimitsOf } from '../config.ts';
import { describeForUser, UserError } from '../errors.ts';
import { log } from '../log.ts';
import type { BuildSource } from '../orchestrator/builder.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import { parseExecCommand } from './exec-command.ts';
import { channelSink } from './channel-sink.ts';
import type { KeyRecord } from './key-store.ts';
import { serveReceivePack, type RefUpdate } from './receive-pack.ts';
import { Repository, ZERO_OID } from './repository.ts';
import type { ExecHandler, ExecRequest } from './ssh-server.ts';
import { readAll } from '../read-all.ts';

/** Branches whose push deploys the app; any other ref is stored only. */
export const DEPLOY_BRANCHES = ['refs/heads/main', 'refs/heads/master'] as const;

export function createExecHandler(services: Services): ExecHandler {
  return async (request) => {
    const { channel } = request;
    const abort = new AbortController();
    channel.on('close', () => abort.abort());
    // A terminal (ssh -t) does not turn \n into \r\n for us.
    const crlf = (s: string | Buffer) => (request.terminal ? Buffer.from(s.toString('latin1').replace(/(?<!\r)\n/g, '\r\n'), 'latin1') : s);
    // Output waits for the client: a write the channel cannot take returns a promise to its producer.
    const toStdout = channelSink(channel, crlf);
    const toStderr = channelSink(channel.stderr, crlf);
    const out = new StreamOutput(toStdout, toStderr);
    let parsed;
    try {
      parsed = parseExecCommand(request.command);
    } catch (e) {
      const { lines, exitCode } = describeForUser(e, 'ssh exec');
      for (const line of lines) out.error(line);
      log.warn('ssh_exec_refused', { key: request.key.name, address: request.address, command: request.command.slice(0, 200), error: (e as Error).message });
      return exitCode;
    }
    if (parsed.kind === 'command') {
      log.info('ssh_command', { key: request.key.name, address: request.address, command: parsed.words[0] });
      const code = await runCommand(parsed.words, {
        out,
        caller: { kind: 'ssh', key: request.key, address: request.address },
        services,
        cwd: '/',
        signal: abort.signal,
        readStdin: () => readAll(channel),
        stdin: () => channel,
        stderr: toStderr,
        ...(request.terminal ? { terminal: request.terminal } : {}),
      });
      if (code !== 0) log.warn('ssh_command_failed', { key: request.key.name, address: request.address, command: parsed.words[0]?.slice(0, 100), code });
      return code;
    }
    try {
      if (parsed.kind === 'upload-pack') {
        log.warn('fetch_refused', { key: request.key.name, address: request.address, app: parsed.app });
        throw new UserError('fetch_not_served', `berth does not serve clones or fetches of ${parsed.app}; it receives pushes only`, {
          hint: 'keep your own clone as the source of truth; berth stores what you push',
        });
      }
      await receive(services, request, parsed.app, abort.signal);
      return 0;
    } catch (e) {
      // receive-pack has already told the client about protocol and pack errors in git's own terms.
      if (e instanceof UserError && e.code.startsWith('git_')) return 1;
      const { lines, exitCode } = describeForUser(e, `push to ${parsed.app}`);
      for (const line of lines) out.error(line);
      return exitCode;
    }
  };
}

async function receive(services: Services, request: ExecRequest, app: string, signal: AbortSignal): Promise<void> {
  authorizeApp(request.key, app);
  const orchestrator = services.orchestrator;
  if (!orchestrator) throw new Error('receive-pack without a running orchestrator');
  // The whole push holds the app: refs are advertised only once an earlier push is done with
  // them, so a second push is computed against what the first left, and git itself refuses it
  // when it is no longer a fast-forward. Standard error is the one place git shows text before
  // the protocol starts.
  const waiting = new StreamOutput((s) => {
    if (!request.channel.destroyed) request.channel.stderr.write(s);
  });
  await services.locks.run(
    app,
    async () => {
      if (signal.aborted) return; // the client gave up while it waited
      await receiveLocked(services, orchestrator, request, app, signal);
    },
    () => {
      waiting.step(`Another push to ${app} is running; waiting for it to finish`);
      log.info('push_waiting', { app, key: request.key.name, address: request.address });
    },
  );
}

async function receiveLocked(services: Services, orchestrator: Orchestrator, request: ExecRequest, app: string, signal: AbortSignal): Promise<void> {
  if (!services.apps.get(app)) {
    await services.apps.create(app);
    log.info('app_created', { app, by: `ssh:${request.key.name}`, via: 'push' });
  }
  const repo = await Repository.open(services.paths.repos, app, { create: true });
  log.info('push_started', { app, key: request.key.name, address: request.address });
  const limits = pushLimitsOf(services.config);
  await serveReceivePack({ input: request.channel, output: request.channel }, repo, {
    preReceive: async (updates, progress) => {
      const out = new StreamOutput((s) => progress(s.toString()));
      const verdicts = new Map<string, string>();
      const deploy = chooseDeployUpdate(updates);
      for (const u of updates) {
        if (u === deploy) continue;
        if (u.newOid === ZERO_OID) out.step(`${u.ref} deleted`);
        else out.step(`${u.ref} stored; only main or master is deployed`);
      }
      if (!deploy) return verdicts;
      // Objects are inflated and resolved in a child process, under the push's caps.
      const contents = repo.contents(limits);
      const source: BuildSource = {
        app,
        commit: deploy.newOid,
        readFile: (p) => contents.readFile(deploy.newOid, p),
        archive: () => contents.archive(deploy.newOid),
      };
      try {
        await orchestrator.deploy({ source, pushedBy: request.key.name, out, signal });
        log.info('push_deployed', { app, commit: deploy.newOid, key: request.key.name });
      } catch (e) {
        const { lines } = describeForUser(e, `deploy of ${app}`);
        for (const line of lines) out.error(line);
        out.error(`${app} was not deployed; the previous release keeps serving`);
        verdicts.set(deploy.ref, lines[0] ?? 'deploy failed');
        if (signal.aborted) log.warn('push_cancelled', { app, commit: deploy.newOid, key: request.key.name, reason: 'the client disconnected' });
        else log.warn('push_deploy_failed', { app, commit: deploy.newOid, key: request.key.name, error: e });
      } finally {
        contents.close();
      }
      return verdicts;
    },
  }, { limits });
}

// main wins over master when both arrive in one push; deletions never deploy.
function chooseDeployUpdate(updates: RefUpdate[]): RefUpdate | undefined {
  for (const branch of DEPLOY_BRANCHES) {
    const u = updates.find((x) => x.ref === branch && x.newOid !== ZERO_OID);
    if (u) return u;
  }
  return undefined;
}

function authorizeApp(key: KeyRecord, app: string): void {
  if (key.apps && !key.apps.includes(app)) {
    log.warn('push_refused', { key: key.name, app, reason: 'scope' });
    throw new UserError('forbidden', `key "${key.name}" may not push to ${app}: it is limited to the apps ${key.apps.join(', ')}`);
  }
}

