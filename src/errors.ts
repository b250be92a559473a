// The two kinds of error: UserError (expected, safe to show, says what to do next) and
// everything else, which is a bug and is shown as one line with an id that points at the log.
import { log, newErrorId } from './log.ts';

export class UserError extends Error {
  /** Stable, machine-readable reason, e.g. `invalid_app_name`. */
  readonly code: string;
  /** What the user can do about it, shown on its own line. */
  readonly hint: string | undefined;
  /** Process exit status for the CLI and SSH surfaces. */
  readonly exitCode: number;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown; exitCode?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = 'UserError';
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}

/**
 * The lines a user sees for an error, and the exit status. Pure: a UserError shows its message
 * and hint; anything else is a bug, shown as one line with its id, the same id every time the
 * same error is rendered.
 */
export function renderError(e: unknown): { lines: string[]; exitCode: number } {
  if (isUserError(e)) {
    const lines = [e.message];
    if (e.hint) lines.push(e.hint);
    return { lines, exitCode: e.exitCode };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { lines: [`internal error (id ${errorId(e)}): ${message}`, 'this is a bug in berth; the daemon log has the details under that id'], exitCode: 1 };
}

/**
 * What a surface (the SSH or CLI printer, the build log) does with an error it shows: a bug is
 * logged with its stack under its id, once however many surfaces show it; returns the lines.
 */
export function describeForUser(e: unknown, context: string): { lines: string[]; exitCode: number } {
  // Something thrown that is not an object cannot keep an id: it becomes an Error that can.
  const error = isObject(e) ? e : new Error(String(e));
  if (!isUserError(error)) logBugOnce(error, context);
  return renderError(error);
}

/** A bug's id: made the first time it is asked for, then the same for that error. */
export function errorId(e: unknown): string {
  if (!isObject(e)) return newErrorId();
  let id = ids.get(e);
  if (id === undefined) {
    id = newErrorId();
    ids.set(e, id);
  }
  return id;
}

const ids = new WeakMap<object, string>();
const logged = new WeakSet<object>();

function logBugOnce(e: object, context: string): void {
  if (logged.has(e)) return;
  logged.add(e);
  log.error('internal_error', { id: errorId(e), context, error: e });
}

function isObject(e: unknown): e is object {
  return (typeof e === 'object' && e !== null) || typeof e === 'function';
}

/** Wraps an error with the context of the layer it passes through, keeping the cause. */
export function wrapError(context: string, e: unknown): Error {
  if (isUserError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new Error(`${context}: ${message}`, { cause: e });
}
