// The layers of src/ and what each may import, read from the source (static imports, re-exports
// and dynamic `import(...)`): a violation fails with the file and the import that break the rule.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const SRC = path.resolve(import.meta.dirname, '..', 'src');

interface Rule {
  /** The folders or files (under src/) whose files the rule applies to; `*.ts` is the files directly in src/. */
  from: readonly string[];
  /** The folders or files (under src/) they may not import. */
  not: readonly string[];
  /** Files of `from` the rule leaves out. */
  except?: readonly string[];
  /** Files inside `not` they may import all the same. */
  allow?: readonly string[];
}

const LAYERS = ['cli', 'dashboard', 'daemon', 'platform', 'git', 'orchestrator', 'proxy', 'services', 'state', 'ui'];

const RULES: readonly Rule[] = [
  { from: ['git', 'orchestrator', 'proxy', 'state'], not: ['cli', 'platform'] },
  // The processes (supervisor, proxy, control) compose the layers; no layer below reaches back.
  { from: ['git', 'orchestrator', 'proxy', 'state', 'ui', 'cli'], not: ['daemon'] },
  { from: ['state'], not: ['proxy', 'orchestrator', 'git'] },
  { from: ['platform'], not: ['cli'] },
  // Commands call one operation of the application layer: no engine, no orchestrator, no lock.
  { from: ['cli/commands'], not: ['orchestrator/engine.ts', 'orchestrator/orchestrator.ts', 'orchestrator/app-operations.ts', 'platform/app-lock.ts'] },
  // The dashboard is a surface like the CLI: it uses the application layer and the command
  // registry; nothing below it (nor the CLI, which reaches it through the application layer) imports it.
  { from: ['git', 'orchestrator', 'proxy', 'state', 'platform', 'cli'], not: ['dashboard'] },
  { from: ['dashboard'], not: ['daemon', 'orchestrator', 'proxy', 'platform/app-lock.ts'] },
  { from: ['ui'], not: LAYERS.filter((l) => l !== 'ui') },
  // Backing services' kinds, data operations and backups: below the orchestrator (which runs
  // them), above the state; of the orchestrator they know the engine's interface only.
  { from: ['services'], not: ['cli', 'dashboard', 'daemon', 'platform', 'git', 'proxy', 'ui', 'orchestrator'], allow: ['orchestrator/engine.ts'] },
  { from: ['state', 'git', 'proxy', 'ui'], not: ['services'] },
  // The neutral modules at the top (errors, log, config, names); main.ts and serve.ts wire the layers.
  { from: ['*.ts'], not: LAYERS, except: ['main.ts', 'serve.ts'] },
];

/** Every .ts file under src/, as a path relative to src/. */
function sourceFiles(dir = SRC): string[] {
  const files: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...sourceFiles(full));
    else if (entry.name.endsWith('.ts')) files.push(path.relative(SRC, full));
  }
  return files.sort();
}

// import ... from '...', import type ..., export ... from '...', import '...', import('...').
const IMPORT = /\bimport\s+(?:type\s+)?[\w*{}\s,$]*?\bfrom\s*['"]([^'"]+)['"]|\bexport\s+(?:type\s+)?(?:\*|\*\s+as\s+\w+|\{[^}]*\})\s*from\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The relative imports of a file (static, type-only, re-exports, dynamic), resolved to paths under src/. */
function importsOf(file: string, text = fs.readFileSync(path.join(SRC, file), 'utf8')): Array<{ specifier: string; target: string }> {
  // Comments go first, so that an import in a comment is not read; a `//` inside a string only
  // hides the rest of its line, which holds no import.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
  const found: Array<{ specifier: string; target: string }> = [];
  for (const m of code.matchAll(IMPORT)) {
    const specifier = m[1] ?? m[2] ?? m[3] ?? m[4]!;
    if (!specifier.startsWith('.')) continue;
    found.push({ specifier, target: path.relative(SRC, path.resolve(SRC, path.dirname(file), specifier)) });
  }
  return found;
}

/** Whether a path under src/ is `place` (a file) or inside it (a folder; `*.ts`: directly in src/). */
function within(relative: string, place: string): boolean {
  const p = relative.split(path.sep).join('/');
  if (place === '*.ts') return !p.includes('/');
  return p === place || p.startsWith(place + '/');
}

function violations(rule: Rule): string[] {
  const found: string[] = [];
  for (const file of sourceFiles()) {
    if (!rule.from.some((f) => within(file, f)) || rule.except?.includes(file)) continue;
    for (const { specifier, target } of importsOf(file)) {
      if (rule.not.some((n) => within(target, n)) && !rule.allow?.some((a) => within(target, a))) found.push(`src/${file} imports ${specifier}`);
    }
  }
  return found;
}

test('the import reader sees static imports, re-exports, type imports and dynamic import()', () => {
  const text = [
    "import { a } from '../cli/a.ts';",
    "import type { B } from '../platform/b.ts';",
    "export { c } from './c.ts';",
    "const d = await import('../proxy/d.ts');",
    "import 'node:fs';",
    "import {\n  e,\n  type F,\n} from '../orchestrator/e.ts';",
    "// import { g } from '../cli/g.ts';",
    "/* import('../cli/h.ts') */",
    "export * from '../git/i.ts';",
  ].join('\n');
  assert.deepEqual(
    importsOf('state/x.ts', text).map((i) => i.target),
    ['cli/a.ts', 'platform/b.ts', 'state/c.ts', 'proxy/d.ts', 'orchestrator/e.ts', 'git/i.ts'].map((p) => p.split('/').join(path.sep)),
  );
});

for (const rule of RULES) {
  const place = (f: string) => (f === '*.ts' ? 'src/*.ts' : f.endsWith('.ts') ? `src/${f}` : `src/${f}/`);
  const name = `${rule.from.map(place).join(', ')}${rule.except ? ` (but ${rule.except.map((f) => `src/${f}`).join(', ')})` : ''} import${rule.from.length === 1 ? 's' : ''} nothing from ${rule.not.map(place).join(', ')}${rule.allow ? ` but ${rule.allow.map(place).join(', ')}` : ''}`;
  test(name, () => {
    const found = violations(rule);
    assert.deepEqual(found, [], `${name}, but:\n  ${found.join('\n  ')}`);
  });
}
