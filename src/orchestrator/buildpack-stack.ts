// The stack id buildpacks see as STACK (heroku-24), taken from the stack image itself: its STACK
// or CNB_STACK_ID environment, its io.buildpacks.stack.id label, or, for Heroku's own images
// (heroku/heroku:NN or :NN-build), heroku-NN. An app's STACK config var overrides it.

/** The stack id when the image says nothing of its own (herokuish's default). */
export const FALLBACK_STACK_ID = 'heroku-24';

export interface StackId {
  id: string;
  /** Where the id came from, for the build output. */
  from: string;
}

const STACK_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The stack id of `image`, or undefined when the image carries none. */
export function stackIdOfImage(image: string, env: readonly string[], labels: Record<string, string>): StackId | undefined {
  const envVar = (name: string) => env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1).trim();
  for (const name of ['STACK', 'CNB_STACK_ID']) {
    const value = envVar(name);
    if (value && STACK_ID_PATTERN.test(value)) return { id: value, from: `the image's ${name}` };
  }
  const label = labels['io.buildpacks.stack.id']?.trim();
  if (label && STACK_ID_PATTERN.test(label)) return { id: label, from: 'the image label io.buildpacks.stack.id' };
  const heroku = /^(?:docker\.io\/)?heroku\/heroku:(\d+)(?:-build)?(?:@.*)?$/.exec(image);
  if (heroku) return { id: `heroku-${heroku[1]}`, from: 'the image name' };
  return undefined;
}

/** STACK for a build: the app's STACK config var, else the image's id, else the fallback. */
export function stackIdFor(appConfig: Record<string, string>, image: string, env: readonly string[], labels: Record<string, string>): StackId {
  const own = appConfig.STACK?.trim();
  if (own) return { id: own, from: "the app's STACK config var" };
  return stackIdOfImage(image, env, labels) ?? { id: FALLBACK_STACK_ID, from: `a default: ${image} names no stack id (STACK, CNB_STACK_ID or io.buildpacks.stack.id); set the app's STACK config var to choose one` };
}
