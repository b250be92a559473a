// Config var names and assignments (`KEY=value`), checked where they enter: a value may hold
// anything (spaces, `=`, newlines); a key is a shell-safe name that berth does not own.
import { UserError } from './errors.ts';

export const CONFIG_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/** Set by berth for every container; an app cannot override them. */
export const RESERVED_KEYS = ['PORT', 'DYNO'] as const;

export function validateConfigKey(key: string): string {
  if (!CONFIG_KEY_PATTERN.test(key)) {
    throw new UserError('invalid_config_key', `invalid config key ${JSON.stringify(key)}`, {
      hint: 'a key starts with a letter or _, then letters, digits or _ (such as DATABASE_URL)',
    });
  }
  if ((RESERVED_KEYS as readonly string[]).includes(key)) {
    throw new UserError('reserved_config_key', `${key} is set by berth for every process and cannot be changed`, { hint: `the web process gets PORT=5000; DYNO names the container, such as web.1` });
  }
  return key;
}

/** Parses `KEY=value` words (the value is everything after the first `=`); every bad word is reported at once. */
export function parseAssignments(words: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) {
      problems.push(`${JSON.stringify(w.length > 60 ? w.slice(0, 60) + '…' : w)} is not KEY=value`);
      continue;
    }
    try {
      out[validateConfigKey(w.slice(0, eq))] = w.slice(eq + 1);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) {
    throw new UserError('invalid_config_assignment', problems.join('; '), {
      hint: 'give KEY=value pairs; quote values with spaces: config:set APP "GREETING=hello world"',
    });
  }
  return out;
}
