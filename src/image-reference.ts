// The one check of an image reference a user gives (a stack image, an app's image, a service's
// image, --registry-image), before it reaches the engine.
import { UserError } from './errors.ts';

/**
 * Why `image` cannot be an image reference, or undefined when it can: its characters, and its
 * repository path in lowercase (the engine refuses any other; a registry host and a tag may hold
 * capitals).
 */
export function imageReferenceProblem(image: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9._/:@-]{0,254}$/i.test(image)) return `"${image}" is not an image reference`;
  let name = image.split('@')[0]!;
  if (name.lastIndexOf(':') > name.lastIndexOf('/')) name = name.slice(0, name.lastIndexOf(':'));
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  const repository = first && (first.includes('.') || first.includes(':') || first === 'localhost') ? name.slice(slash + 1) : name;
  if (/[A-Z]/.test(repository)) return `"${image}" is not an image reference: its repository ${repository} must be lowercase`;
  return undefined;
}

/** Refuses what cannot be an image reference; `example` is the hint's. */
export function checkImageReference(image: string, example = 'heroku/heroku:24-build or registry.example.com/stack:1'): void {
  const problem = imageReferenceProblem(image);
  if (problem) throw new UserError('invalid_image', problem, { hint: `such as ${example}` });
}
