// The images a Dockerfile reads, as the builder would resolve their names: FROM, COPY --from,
// RUN --mount from=, ONBUILD, with ARG and ENV substituted, stages left out; and the guard that
// keeps a Dockerfile that is a link from reaching the engine. The refusal of another app's image
// on the real engine is in test/e2e-build-inputs.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { dockerfileInstructions, imageReferences, substitute } from '../src/orchestrator/dockerfile-images.ts';
import { makeTar, requireRegularFile } from '../src/orchestrator/tar-files.ts';

const refs = async (text: string, onBuild?: (ref: string) => Promise<string[]>) => (await imageReferences(text, onBuild)).map((r) => [r.line, r.via, r.ref ?? null]);

test('instructions follow the parser: directives, escapes, continuations with comments inside, any case', () => {
  const text = '# escape=`\n# a comment\nfrom node:20 `\n  AS build\nRUN echo a `\n# inside\n\n  b\ncopy . .\n';
  assert.deepEqual(dockerfileInstructions(text).map((i) => [i.line, i.keyword, i.rest]), [
    [3, 'FROM', 'node:20   AS build'],
    [5, 'RUN', 'echo a   b'],
    [9, 'COPY', '. .'],
  ]);
  assert.deepEqual(dockerfileInstructions('FROM a \\\n  AS b\n').map((i) => i.rest), ['a   AS b']);
});

test('FROM, COPY --from, ADD --from and RUN --mount from= name images; stages by name or index do not', async () => {
  const text = [
    'FROM berth-x/b:r1 AS base',
    'FROM --platform=linux/amd64 node:20 AS build',
    'COPY --from=base /app /app',
    'COPY --from=0 /a /a',
    'COPY --from=berth-x/b:r2 /app /stolen',
    'COPY --chown=1:1 --from=3f2a9c /x /x',
    'ADD --from=other:1 /y /y',
    'RUN --mount=type=bind,from=berth-x/b@sha256:' + 'a'.repeat(64) + ',target=/m true',
    'RUN --mount=type=cache,target=/c,from=build true',
    'FROM build',
    'COPY --from=7 /z /z',
    'FROM scratch',
  ].join('\n');
  assert.deepEqual(await refs(text), [
    [1, 'FROM', 'berth-x/b:r1'],
    [2, 'FROM', 'node:20'],
    [5, 'COPY --from', 'berth-x/b:r2'],
    [6, 'COPY --from', '3f2a9c'],
    [7, 'ADD --from', 'other:1'],
    [8, 'RUN --mount from', `berth-x/b@sha256:${'a'.repeat(64)}`],
    // RUN --mount from=build in the stage named build itself is not an earlier stage: an image.
    [9, 'RUN --mount from', 'build'],
    [11, 'COPY --from', '7'],
  ]);
});

test('ARG and ENV values are substituted as the builder does; a variable the Dockerfile does not set cannot be known', async () => {
  const text = [
    'ARG REPO=berth-x',
    'ARG APP="b"',
    'ARG UNSET',
    'FROM ${REPO}/${APP}:r1',
    'FROM $REPO/${MISSING:-b}:r2',
    'FROM node:20',
    'ARG APP',
    'ENV SRC=${APP}-copy TAG=r3',
    'COPY --from=berth-x/$APP:$TAG / /',
    'COPY --from=$SRC / /',
    'COPY --from=$FROM_BASE_IMAGE_ENV / /',
    'ARG STAGE_ONLY',
    'COPY --from=${STAGE_ONLY} / /',
    'FROM ${UNSET}',
    'FROM ${REPO:+berth-x}/b:${WEIRD/x/y}',
  ].join('\n');
  assert.deepEqual(await refs(text), [
    [4, 'FROM', 'berth-x/b:r1'],
    [5, 'FROM', 'berth-x/b:r2'],
    [6, 'FROM', 'node:20'],
    [9, 'COPY --from', 'berth-x/b:r3'],
    [10, 'COPY --from', 'b-copy'],
    [11, 'COPY --from', null],
    [13, 'COPY --from', null],
    [14, 'FROM', null],
    [15, 'FROM', null],
  ]);
  assert.equal(substitute('\\$HOME', new Map(), false), undefined, 'a literal $ is no image name either');
  assert.equal(substitute('a${X:-d}b', new Map([['X', '']]), false), 'adb');
  assert.equal(substitute('a${X-d}b', new Map([['X', '']]), false), 'ab');
});

test('ADD with a URL source (shell or JSON form, or hidden in a variable) is found; ADD of local files is not', async () => {
  const text = [
    'FROM node:20',
    'ARG META=http://169.254.169.254/latest/meta-data/',
    'ADD https://example.test/a.tgz /a',
    'ADD ["http://127.0.0.1:2375/info", "/b"]',
    'ADD $META /c',
    'ADD $UNKNOWN /d',
    'ADD --chown=1:1 local.txt other.txt /e/',
  ].join('\n');
  assert.deepEqual(await refs(text), [
    [1, 'FROM', 'node:20'],
    [3, 'ADD', 'https://example.test/a.tgz'],
    [4, 'ADD', 'http://127.0.0.1:2375/info'],
    [5, 'ADD', 'http://169.254.169.254/latest/meta-data/'],
    [6, 'ADD', null],
  ]);
});

test("ONBUILD triggers count: the Dockerfile's own, and those of a base image", async () => {
  const text = 'FROM node:20\nONBUILD COPY --from=berth-x/b:r1 / /\nFROM base-with-triggers\n';
  const onBuild = async (ref: string) => (ref === 'base-with-triggers' ? ['COPY --from=berth-x/c:r9 /app /app', 'RUN true'] : []);
  assert.deepEqual(await refs(text, onBuild), [
    [1, 'FROM', 'node:20'],
    [2, 'COPY --from', 'berth-x/b:r1'],
    [3, 'FROM', 'base-with-triggers'],
    [0, 'COPY --from', 'berth-x/c:r9'],
  ]);
});

async function drain(tar: NodeJS.ReadableStream, guard: ReturnType<typeof requireRegularFile>): Promise<number> {
  let bytes = 0;
  await pipeline(tar, guard, new Writable({ write: (c: Buffer, _e, done) => ((bytes += c.length), done()) }));
  return bytes;
}

test('a build context whose Dockerfile is a link is stopped at its header; a regular one passes whole', async () => {
  const big = Buffer.alloc(700_000, 7);
  const plain = makeTar([{ name: 'big.bin', type: 'file', content: big }, { name: 'Dockerfile', type: 'file', content: 'FROM node:20\n' }]);
  const bytes = await drain(plain, requireRegularFile('Dockerfile', () => new Error('refused')));
  assert.ok(bytes > big.length);
  const { default: tar } = await import('tar-stream');
  const pack = tar.pack();
  pack.entry({ name: 'big.bin', type: 'file' }, big);
  pack.entry({ name: 'sub/', type: 'directory' });
  pack.entry({ name: 'sub/Dockerfile', type: 'symlink', linkname: 'x' });
  pack.entry({ name: 'Dockerfile', type: 'symlink', linkname: 'sub/real' });
  pack.finalize();
  await assert.rejects(drain(Readable.from(pack), requireRegularFile('Dockerfile', () => new Error('the Dockerfile is a link'))), /the Dockerfile is a link/);
});
