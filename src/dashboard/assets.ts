// The dashboard's page as the server hands it out. The binary carries it (build.mjs puts the
// build of src/dashboard/page/ in place of the placeholder); run from source, it is built with
// esbuild on first use.
import { createHash } from 'node:crypto';
import type { BuiltAsset } from './page-build.ts';

declare const __BERTH_DASHBOARD__: Record<string, BuiltAsset> | undefined;

export interface Asset {
  contentType: string;
  body: Buffer;
  /** A strong validator of the body, for `ETag`. */
  etag: string;
}

let loading: Promise<ReadonlyMap<string, Asset>> | undefined;

/** The page's files by URL path (`/`, `/assets/app.js`, `/assets/app.css`). */
export function dashboardAssets(): Promise<ReadonlyMap<string, Asset>> {
  loading ??= load();
  return loading;
}

async function load(): Promise<ReadonlyMap<string, Asset>> {
  const built = typeof __BERTH_DASHBOARD__ === 'object' ? __BERTH_DASHBOARD__ : await (await import('./page-build.ts')).buildPage();
  const assets = new Map<string, Asset>();
  for (const [url, asset] of Object.entries(built)) {
    const body = Buffer.from(asset.base64, 'base64');
    assets.set(url, { contentType: asset.contentType, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return assets;
}
