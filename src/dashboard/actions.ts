// POST /api/run: a command line run through the same registry as SSH, with the session's key as
// the caller (same scopes, same refusals, same log lines), its output returned as plain text.
// Commands that need a terminal or standard input stay with SSH.
import type { Caller } from '../cli/command.ts';
import { COMMANDS, runCommand } from '../cli/registry.ts';
import { isValidAppName } from '../app-name.ts';
import { log } from '../log.ts';
import type { Platform } from '../platform/platform.ts';
import { withoutEscapes } from '../ui/plain-text.ts';
import type { State } from '../platform/state.ts';
import { StreamOutput, type Output } from '../ui/output.ts';
import { ApiError } from './answers.ts';
import { actorName, type Actor } from './identity.ts';

/** Words a command line from the page may have, and their length. */
export const MAX_WORDS = 64;
export const MAX_WORD_LENGTH = 4096;
/** Output an action returns; the rest is counted, not kept. */
export const MAX_ACTION_OUTPUT = 1024 * 1024;

/** Commands that read standard input, need a terminal, or never end: SSH only. */
const SSH_ONLY = new Set(['run', 'upgrade', 'ssh-keys:add', 'certs:add']);

export interface ActionDeps {
  state: State;
  platform: Platform;
}

/** The `words` of a /api/run body, checked; an ApiError 400 otherwise. `ssh`: how users reach berth over SSH (`ssh -p 2222 berth@HOST`), for hints. */
export function wordsOf(body: Record<string, unknown>, ssh: string): string[] {
  const words = body.words;
  if (!Array.isArray(words) || words.length === 0 || words.length > MAX_WORDS || !words.every((w) => typeof w === 'string' && w.length <= MAX_WORD_LENGTH)) {
    throw new ApiError(400, 'bad_words', `"words" must be a list of 1 to ${MAX_WORDS} strings, such as ["ps:restart", "APP"]`);
  }
  const name = words[0] as string;
  const following = name === 'logs' && words.some((w) => w === '-t' || w === '--tail' || (/^-[a-z]+$/.test(w) && w.includes('t')));
  if (SSH_ONLY.has(name) || name.endsWith(':connect') || name.endsWith(':import') || following) {
    throw new ApiError(400, 'use_ssh', `${following ? 'logs -t' : name} is not available from the dashboard`, `use ${ssh} ${words.join(' ')}`);
  }
  return words as string[];
}

/** Runs the words as `actor`; resolves to its exit status and output (ANSI removed). */
export async function runAction(deps: ActionDeps, actor: Actor, words: string[], client: { address: string; signal: AbortSignal }): Promise<{ exitCode: number; output: string }> {
  log.info('dashboard_action', { key: actorName(actor), ...actionFields(words), address: client.address });
  const out = cappedOutput(MAX_ACTION_OUTPUT);
  const caller: Caller = actor.kind === 'local' ? { kind: 'local' } : { kind: 'ssh', key: actor.key, address: `dashboard ${client.address}` };
  const exitCode = await runCommand(words, {
    out,
    caller,
    state: deps.state,
    daemon: deps.platform,
    cwd: '/',
    signal: client.signal,
    readStdin: async () => Buffer.alloc(0),
  });
  if (exitCode !== 0) log.warn('dashboard_action_failed', { key: actorName(actor), command: words[0], code: exitCode });
  return { exitCode, output: out.text() };
}

/** An Output that keeps its first `max` characters and counts the rest; text() is plain (ANSI removed), with a note when cut. */
export function cappedOutput(max: number): Output & { text(): string } {
  const kept: string[] = [];
  let size = 0;
  let dropped = 0;
  const out = new StreamOutput((chunk) => {
    const text = chunk.toString();
    const room = Math.max(0, max - size);
    kept.push(text.slice(0, room));
    size += Math.min(room, text.length);
    dropped += Math.max(0, text.length - room);
  });
  return Object.assign(out, {
    text: () => withoutEscapes(kept.join('').replace(/\r\n/g, '\n')) + (dropped > 0 ? `\n[output truncated: ${dropped} more characters; run the command over SSH to see all of it]\n` : ''),
  });
}

/**
 * What a log line says of an action: the command's name (a known one, as SSH logs it) and the app
 * it names, never its other words (a KEY=VALUE, a URL with credentials in it).
 */
export function actionFields(words: readonly string[]): { command: string; app?: string } {
  const command = COMMANDS.find((c) => c.name === words[0]);
  if (!command) return { command: '(unknown command)' };
  // The APP argument, where the command takes one first (as the registry reads it).
  const app = command.args?.[0] === 'APP' ? words.slice(1).find((w) => !w.startsWith('-')) : undefined;
  return app !== undefined && isValidAppName(app) ? { command: command.name, app } : { command: command.name };
}
