// app.json as a release keeps it: read from the built app (the pipeline), or, for an image
// deployed with git:from-image, from the image's working directory (where Dokku looks too). Only
// its `healthchecks` are used; they are validated here, where they enter, so a bad one fails the
// deploy before anything starts.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { log } from '../log.ts';
import { buildContainerPrefix } from './buildpack-builder.ts';
import { NotFoundError, type Engine } from './engine.ts';
import { healthchecksSection, type HealthchecksSection } from './health-check.ts';
import { readTarFiles } from './tar-files.ts';

/** The largest app.json berth reads. */
export const MAX_APP_JSON_BYTES = 256 * 1024;

/** The healthchecks of the app.json in an image's working directory (else at /), if it has one. */
export async function healthchecksOfImage(engine: Engine, image: string): Promise<HealthchecksSection | undefined> {
  const config = await engine.imageConfig(image);
  const file = path.posix.join(config?.workingDir || '/', 'app.json');
  const text = await readImageFile(engine, image, file);
  return text === undefined ? undefined : healthchecksSection(text.toString('utf8'));
}

// A container that is created and never started gives the image's files through the archive API.
// It is named like a build container, so one left behind by a crash is removed at start-up.
async function readImageFile(engine: Engine, image: string, file: string): Promise<Buffer | undefined> {
  const id = await engine.create({
    name: `${buildContainerPrefix(engine.instance)}appjson.${randomBytes(3).toString('hex')}`,
    image,
    env: {},
    labels: {},
    network: 'none',
    aliases: [],
    entrypoint: ['/app.json-is-only-read'],
    restart: false,
  });
  try {
    let archive: Readable;
    try {
      archive = await engine.getArchive(id, file);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
    const files = await readTarFiles(archive, MAX_APP_JSON_BYTES);
    return files.get('app.json');
  } finally {
    await engine.stopAndRemove(id, 0).catch((e) => log.warn('container_remove_failed', { id, error: e }));
  }
}
