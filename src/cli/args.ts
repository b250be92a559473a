// Parses a command's words into positionals and flags (`--name value`, `--name=value`,
// `--switch`), refusing unknown flags and missing values with a usage line.
import { UserError } from '../errors.ts';

export type FlagKinds = Record<string, 'boolean' | 'string'>;

export interface ParsedArgs {
  positional: string[];
  flags: Record<string, string | boolean | undefined>;
}

export function parseArgs(command: string, usage: string, words: readonly string[], kinds: FlagKinds = {}): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string | boolean | undefined> = {};
  const bad = (what: string) =>
    new UserError('bad_arguments', `${command}: ${what}`, { hint: `usage: ${command} ${usage}`.trimEnd(), exitCode: 2 });
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--') {
      positional.push(...words.slice(i + 1));
      break;
    }
    if (w.startsWith('--') && w.length > 2) {
      const eq = w.indexOf('=');
      const name = eq > 0 ? w.slice(2, eq) : w.slice(2);
      const kind = kinds[name];
      if (!kind) throw bad(`unknown flag --${name}`);
      if (kind === 'boolean') {
        if (eq > 0) throw bad(`--${name} takes no value`);
        flags[name] = true;
      } else {
        const value = eq > 0 ? w.slice(eq + 1) : words[++i];
        if (value === undefined) throw bad(`--${name} needs a value`);
        flags[name] = value;
      }
    } else {
      positional.push(w);
    }
  }
  return { positional, flags };
}

/** Checks the number of positionals and names the missing one. */
export function expectPositionals(command: string, usage: string, positional: string[], names: string[], optional = 0): void {
  const required = names.length - optional;
  if (positional.length < required) {
    throw new UserError('bad_arguments', `${command}: missing ${names[positional.length]}`, { hint: `usage: ${command} ${usage}`, exitCode: 2 });
  }
  if (positional.length > names.length) {
    throw new UserError('bad_arguments', `${command}: unexpected argument "${positional[names.length]}"`, { hint: `usage: ${command} ${usage}`, exitCode: 2 });
  }
}
