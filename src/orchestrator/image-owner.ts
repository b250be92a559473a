// Whose image an image is, for the images a tenant may name (git:from-image, buildpacks:set-stack,
// a Dockerfile's FROM and COPY --from): berth's release images are tagged berth-INSTANCE/APP:rN,
// and an image holding one of those tags belongs to that app.
import { imageRepository } from './builder.ts';
import type { ImageIdentity } from './engine.ts';

/** berth-INSTANCE/APP, as a reference names it (Docker Hub's own prefixes allowed, as the engine allows them). */
const RELEASE_REPOSITORY = /^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/)?berth-([a-z0-9][a-z0-9_.-]*)\/([a-z0-9][a-z0-9_.-]*)(?=[:@]|$)/i;

/**
 * The app (and instance) whose release repository a reference or tag names, if it names one: of
 * this instance, or of another berth data dir on the same engine (whose ids are 12 hex digits).
 */
export function releaseRepositoryOf(ref: string, instance: string): { instance: string; app: string } | undefined {
  const m = RELEASE_REPOSITORY.exec(ref.trim());
  if (!m) return undefined;
  const owner = { instance: m[1]!.toLowerCase(), app: m[2]!.toLowerCase() };
  return owner.instance === instance.toLowerCase() || /^[a-f0-9]{12}$/.test(owner.instance) ? owner : undefined;
}

/** The apps whose release tags the image carries, as `INSTANCE/APP`. */
export function releaseOwners(identity: ImageIdentity, instance: string): string[] {
  const owners = new Set<string>();
  for (const tag of identity.repoTags) {
    const owner = releaseRepositoryOf(tag, instance);
    if (owner) owners.add(`${owner.instance}/${owner.app}`);
  }
  return [...owners];
}

/** The image carries a release tag of `app` on this instance: the app built (or was given) it. */
export function isOwnImage(identity: ImageIdentity, instance: string, app: string): boolean {
  return identity.repoTags.some((t) => t.startsWith(`${imageRepository(instance, app)}:`));
}

/**
 * The other app whose image a reference names, by its name (even before such a tag exists) or,
 * once resolved, by its release tags; undefined when it names none (or `app`'s own).
 */
export function otherAppOf(ref: string, identity: ImageIdentity | undefined, instance: string, app: string): string | undefined {
  const named = releaseRepositoryOf(ref, instance);
  if (named && !(named.instance === instance.toLowerCase() && named.app === app)) return named.app;
  if (!identity || isOwnImage(identity, instance, app)) return undefined;
  const other = releaseOwners(identity, instance)[0];
  return other?.slice(other.indexOf('/') + 1);
}
