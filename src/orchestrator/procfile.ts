// Procfile (`type: command` per line) and the `default_process_types` of a buildpack's
// bin/release output: parsed and checked where they enter, a bad line named by its number.
import { UserError } from '../errors.ts';

export const PROCESS_TYPE_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/;

/** The process types of a Procfile, in file order. Comments (#) and blank lines are skipped. */
export function parseProcfile(text: string): Record<string, string> {
  const types: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^([^:\s]+)\s*:\s*(.*)$/.exec(line);
    const where = `Procfile line ${i + 1}: ${JSON.stringify(raw.length > 100 ? raw.slice(0, 100) + '…' : raw)}`;
    if (!m) throw new UserError('invalid_procfile', `${where} is not "type: command"`, { hint: 'each line is a process type, a colon and the command, such as `web: node server.js`' });
    const [, type, command] = m as unknown as [string, string, string];
    if (!PROCESS_TYPE_PATTERN.test(type)) {
      throw new UserError('invalid_procfile', `${where}: "${type}" is not a valid process type`, { hint: 'a process type is letters, digits, - and _ (such as web, worker, clock)' });
    }
    if (command.trim() === '') throw new UserError('invalid_procfile', `${where}: the command of "${type}" is empty`, { hint: 'give the command after the colon' });
    if (type in types) throw new UserError('invalid_procfile', `${where}: "${type}" is declared twice`, { hint: 'declare each process type once' });
    types[type] = command.trim();
  });
  return types;
}

/**
 * The two mappings of bin/release output that berth uses, from the small YAML subset buildpacks
 * print: `default_process_types:` and `config_vars:`, each with indented `key: value` lines
 * (values plain, or in single or double quotes).
 */
export function parseReleaseYaml(text: string): { processTypes: Record<string, string>; configVars: Record<string, string> } {
  const out = { processTypes: {} as Record<string, string>, configVars: {} as Record<string, string> };
  let section: Record<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    if (raw.trim() === '' || raw.trim().startsWith('#') || raw.trim() === '---') continue;
    if (!/^\s/.test(raw)) {
      const key = raw.replace(/:.*$/, '').trim();
      section = key === 'default_process_types' ? out.processTypes : key === 'config_vars' ? out.configVars : undefined;
      continue;
    }
    if (!section) continue;
    const m = /^\s+([^:\s]+)\s*:\s*(.*)$/.exec(raw);
    if (!m) continue;
    section[m[1]!] = unquote(m[2]!.trim());
  }
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1).replace(/''/g, "'");
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
    try {
      return JSON.parse(v) as string;
    } catch {
      return v.slice(1, -1);
    }
  }
  return v;
}
