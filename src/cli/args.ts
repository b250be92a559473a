// A command's declared arguments and flags: the words parsed once against the declaration
// (`--name value`, `--name=value`, `--switch`, `--` ends the flags), their number checked, and
// the usage line help shows, built from the same declaration.
import { validateAppName } from '../app-name.ts';
import { UserError } from '../errors.ts';

/**
 * Flags by name: `'boolean'` for a switch, otherwise the name of the flag's value as help
 * shows it (`index: 'N'` reads `[--index N]`).
 */
export type FlagSpecs = Readonly<Record<string, string>>;

/** What a command declares about its words. */
export interface ArgumentSpec {
  /**
   * Positional arguments in order, as help shows them: `KEY`, `[VALUE]` (optional), and last
   * `KEY...` (one or more) or `[DOMAIN...]` (any number). A first `APP` is an app name: the
   * registry validates it and checks a scoped key against it. Without `args` the command gets
   * its words unchecked (help, version).
   */
  args?: readonly string[];
  flags?: FlagSpecs;
  /** One-letter spellings: `{ t: 'tail' }` makes `-t` mean `--tail`; help shows the short one. */
  short?: Readonly<Record<string, string>>;
  /** Flags not declared are handed to the command (`otherFlags`) instead of refused. */
  looseFlags?: boolean;
  /**
   * The last (list) argument is a command line of its own (run): everything after the arguments
   * before it, as it came, flags and `--help` included, after one optional `--`.
   */
  passThrough?: boolean;
  /** The usage line, only where the one built from `args` and `flags` cannot say it. */
  usage?: string;
}

export interface ParsedWords {
  positional: string[];
  /** Every declared flag: a switch true or false, a flag with a value its string or undefined. */
  flags: Record<string, string | boolean | undefined>;
  otherFlags: string[];
  /** The first problem with a flag; thrown by checkArguments, after the scope check has seen the APP. */
  problem?: string;
}

/** Splits words into positionals and declared flags. Never throws: a problem is kept for checkArguments. */
export function parseWords(spec: ArgumentSpec, words: readonly string[]): ParsedWords {
  const declared = spec.flags ?? {};
  const parsed: ParsedWords = { positional: [], flags: {}, otherFlags: [] };
  for (const [name, kind] of Object.entries(declared)) parsed.flags[name] = kind === 'boolean' ? false : undefined;
  if (spec.args === undefined) {
    parsed.positional.push(...words);
    return parsed;
  }
  if (spec.passThrough) {
    const fixed = spec.args.filter((a) => !isVariadic(a)).length;
    const rest = words.slice(fixed);
    parsed.positional.push(...words.slice(0, fixed), ...(rest[0] === '--' ? rest.slice(1) : rest));
    return parsed;
  }
  const short = spec.short ?? {};
  const long = words.map((w) => (/^-[^-]$/.test(w) && Object.hasOwn(short, w[1]!) ? `--${short[w[1]!]}` : w));
  const problem = (text: string) => void (parsed.problem ??= text);
  for (let i = 0; i < long.length; i++) {
    const w = long[i]!;
    if (w === '--') {
      parsed.positional.push(...long.slice(i + 1));
      break;
    }
    if (!w.startsWith('--')) {
      parsed.positional.push(w);
      continue;
    }
    const eq = w.indexOf('=');
    const name = eq > 0 ? w.slice(2, eq) : w.slice(2);
    const kind = Object.hasOwn(declared, name) ? declared[name] : undefined;
    if (kind === undefined) {
      if (spec.looseFlags) parsed.otherFlags.push(w);
      else problem(`unknown flag --${name}`);
    } else if (kind === 'boolean') {
      if (eq > 0) problem(`--${name} takes no value`);
      parsed.flags[name] = true;
    } else {
      const value = eq > 0 ? w.slice(eq + 1) : long[++i];
      if (value === undefined) problem(`--${name} needs a value`);
      else parsed.flags[name] = value;
    }
  }
  return parsed;
}

/**
 * Refuses a flag problem, a missing argument or one too many, then an invalid APP, then an empty
 * required list (`KEY...`), in that order. Returns the APP when the first argument is one.
 */
export function checkArguments(command: ArgumentSpec & { name: string }, parsed: ParsedWords): string | undefined {
  if (parsed.problem !== undefined) throw usageError(command, parsed.problem);
  const declared = command.args;
  if (declared === undefined) return undefined;
  const fixed = declared.filter((a) => !isVariadic(a));
  const required = fixed.filter((a) => !a.startsWith('[')).length;
  const count = parsed.positional.length;
  if (count < required) throw usageError(command, `missing ${bare(fixed[count]!)}`);
  if (count > fixed.length && fixed.length === declared.length) throw usageError(command, `unexpected argument "${parsed.positional[fixed.length]}"`);
  const app = declared[0] === 'APP' ? validateAppName(parsed.positional[0]!) : undefined;
  const last = declared.at(-1);
  if (last !== undefined && isVariadic(last) && !last.startsWith('[') && count < declared.length) throw usageError(command, `give at least one ${bare(last)}`);
  return app;
}

/** The declared arguments' values in order: a string, undefined (optional, absent) or, last, a list. */
export function argumentValues(spec: ArgumentSpec, positional: readonly string[]): Array<string | string[] | undefined> {
  return (spec.args ?? []).map((a, i) => (isVariadic(a) ? positional.slice(i) : positional[i]));
}

/** `APP KEY [VALUE] [--force] [-n N]`: from the declaration, unless it gives its own. */
export function usageOf(spec: ArgumentSpec): string {
  if (spec.usage !== undefined) return spec.usage;
  const args = (spec.args ?? []).flatMap((a) => (spec.passThrough && isVariadic(a) ? ['[--]', a] : [a]));
  const shortOf = (name: string) => Object.keys(spec.short ?? {}).find((s) => spec.short![s] === name);
  const flags = Object.entries(spec.flags ?? {}).map(([name, kind]) => {
    const s = shortOf(name);
    return `[${s ? `-${s}` : `--${name}`}${kind === 'boolean' ? '' : ` ${kind}`}]`;
  });
  return [...args, ...flags].join(' ');
}

/** A bad command line: exit status 2, with the usage line as the hint. */
export function usageError(command: ArgumentSpec & { name: string }, what: string): UserError {
  return new UserError('bad_arguments', `${command.name}: ${what}`, { hint: `usage: ${command.name} ${usageOf(command)}`.trimEnd(), exitCode: 2 });
}

function isVariadic(arg: string): boolean {
  return arg.endsWith('...') || arg.endsWith('...]');
}

/** `[KEY...]` → `KEY`: the name in messages. */
function bare(arg: string): string {
  return arg.replace(/^\[/, '').replace(/\]$/, '').replace(/\.\.\.$/, '');
}
