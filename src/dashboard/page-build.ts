// Builds the dashboard's page from src/dashboard/page/ with esbuild: one HTML shell, one script,
// one style sheet, nothing fetched from anywhere else. build.mjs embeds the result in the binary;
// run from source, the daemon builds it on first use (assets.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import esbuild from 'esbuild';

export interface BuiltAsset {
  contentType: string;
  /** The file's bytes, base64 (the embedded form is a JSON literal). */
  base64: string;
}

/** The page's files by URL path: `/` (the HTML shell), `/assets/app.js`, `/assets/app.css`. */
export async function buildPage(): Promise<Record<string, BuiltAsset>> {
  const PAGE = path.join(path.dirname(import.meta.filename), 'page');
  const result = await esbuild.build({
    entryPoints: { app: path.join(PAGE, 'main.ts'), style: path.join(PAGE, 'style.css') },
    outdir: '/assets',
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['chrome110', 'firefox115', 'safari16'],
    write: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const assets: Record<string, BuiltAsset> = {};
  for (const file of result.outputFiles) {
    const name = path.basename(file.path);
    const url = name.endsWith('.css') ? '/assets/app.css' : '/assets/app.js';
    assets[url] = { contentType: name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8', base64: Buffer.from(file.contents).toString('base64') };
  }
  const html = await fs.readFile(path.join(PAGE, 'index.html'));
  assets['/'] = { contentType: 'text/html; charset=utf-8', base64: html.toString('base64') };
  return assets;
}
