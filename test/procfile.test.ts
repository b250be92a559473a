import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors.ts';
import { parseProcfile, parseReleaseYaml } from '../src/orchestrator/procfile.ts';

test('a Procfile gives its process types in order; comments and blank lines are skipped', () => {
  assert.deepEqual(parseProcfile('# processes\nweb: node server.js --port $PORT\n\nworker:bin/work   \r\nclock_2: sh -c "a: b"\n'), {
    web: 'node server.js --port $PORT',
    worker: 'bin/work',
    clock_2: 'sh -c "a: b"',
  });
});

test('a bad Procfile line is an error that names its number and text', () => {
  for (const [text, pattern] of [
    ['web: ok\nnot a process line\n', /Procfile line 2: "not a process line" is not "type: command"/],
    ['we b: x', /line 1: "we b: x" is not "type: command"/],
    ['web:   \n', /line 1: .*the command of "web" is empty/],
    ['web: a\nweb: b', /line 2: .*"web" is declared twice/],
    ['-web: a', /"-web" is not a valid process type/],
  ] as const) {
    assert.throws(() => parseProcfile(text), (e: unknown) => e instanceof UserError && e.code === 'invalid_procfile' && pattern.test(e.message), text);
  }
});

test("bin/release output gives default_process_types and config_vars, quoted or not", () => {
  const yaml = `---\naddons: []\nconfig_vars:\n  PATH: "/app/bin:$PATH"\n  LANG: 'en_US.UTF-8'\ndefault_process_types:\n  web: npm start\n  worker: "node worker.js"\n`;
  assert.deepEqual(parseReleaseYaml(yaml), {
    processTypes: { web: 'npm start', worker: 'node worker.js' },
    configVars: { PATH: '/app/bin:$PATH', LANG: 'en_US.UTF-8' },
  });
  assert.deepEqual(parseReleaseYaml(''), { processTypes: {}, configVars: {} });
});
