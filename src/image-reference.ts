// The one check of an image reference a user gives (a stack image, an app's image, a service's
// image), before it reaches the engine.
import { UserError } from './errors.ts';

/** Refuses what cannot be an image reference; `example` is the hint's. */
export function checkImageReference(image: string, example = 'heroku/heroku:24-build or registry.example.com/stack:1'): void {
  if (!/^[a-z0-9][a-z0-9._/:@-]{0,254}$/i.test(image)) {
    throw new UserError('invalid_image', `"${image}" is not an image reference`, { hint: `such as ${example}` });
  }
}
