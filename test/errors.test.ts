// Rendering an error is pure, and a bug keeps one id: every surface that shows it shows the same
// id, and the log holds it once. (On the real binary: e2e-errors.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeForUser, renderError, UserError } from '../src/errors.ts';
import { setLogSink } from '../src/log.ts';

function capture(): { entries: Array<Record<string, unknown>>; restore: () => void } {
  const entries: Array<Record<string, unknown>> = [];
  setLogSink((line) => entries.push(JSON.parse(line) as Record<string, unknown>));
  return { entries, restore: () => setLogSink((line) => process.stderr.write(line + '\n')) };
}

test('rendering a bug logs nothing and gives the same id every time', () => {
  const log = capture();
  try {
    const bug = new Error('the engine said no');
    const first = renderError(bug);
    assert.deepEqual(renderError(bug), first);
    assert.match(first.lines[0]!, /^internal error \(id [0-9a-f]{8}\): the engine said no$/);
    assert.equal(first.exitCode, 1);
    assert.notEqual(renderError(new Error('the engine said no')).lines[0], first.lines[0], 'another error gets another id');
    assert.deepEqual(log.entries, []);
  } finally {
    log.restore();
  }
});

test('a bug shown by two surfaces is logged once, under the id both show', () => {
  const log = capture();
  try {
    const bug = new Error('boom');
    const buildLog = describeForUser(bug, 'deploy of app');
    const client = describeForUser(bug, 'push to app');
    assert.deepEqual(client.lines, buildLog.lines);
    const id = /id ([0-9a-f]{8})/.exec(client.lines[0]!)![1];
    assert.deepEqual(log.entries.map((e) => [e.event, e.id, e.context]), [['internal_error', id, 'deploy of app']]);
  } finally {
    log.restore();
  }
});

test('something thrown that is not an Error is logged and shown under one id', () => {
  const log = capture();
  try {
    const { lines } = describeForUser('a string', 'somewhere');
    assert.equal(log.entries.length, 1);
    assert.ok(lines[0]!.includes(`id ${String(log.entries[0]!.id)}`), lines[0]);
  } finally {
    log.restore();
  }
});

test('a UserError shows its message and hint with its exit status and is not logged', () => {
  const log = capture();
  try {
    const e = new UserError('bad_arguments', 'no such flag', { hint: 'see help', exitCode: 2 });
    assert.deepEqual(describeForUser(e, 'command'), { lines: ['no such flag', 'see help'], exitCode: 2 });
    assert.deepEqual(log.entries, []);
  } finally {
    log.restore();
  }
});
