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
 * Turns any error into the lines a user may see. A UserError shows its message and hint;
 * anything else is logged with its stack and shown as one line carrying the log entry's id.
 */
export function describeForUser(e: unknown, context: string): { lines: string[]; exitCode: number } {
  if (isUserError(e)) {
    const lines = [e.message];
    if (e.hint) lines.push(e.hint);
    return { lines, exitCode: e.exitCode };
  }
  const id = newErrorId();
  log.error('internal_error', { id, context, error: e });
  const message = e instanceof Error ? e.message : String(e);
  return { lines: [`internal error (id ${id}): ${message}`, 'this is a bug in berth; the daemon log has the details under that id'], exitCode: 1 };
}

/** Wraps an error with the context of the layer it passes through, keeping the cause. */
export function wrapError(context: string, e: unknown): Error {
  if (isUserError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new Error(`${context}: ${message}`, { cause: e });
}
