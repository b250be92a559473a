// The caps on what one push may make berth do: each names the `berth serve` flag that sets it, so
// a refused push tells its pusher (and the operator) exactly which limit it hit.
import { UserError } from './errors.ts';

export interface PushLimits {
  /** Pack bytes one push may send, trailer included (--max-pack-size). */
  packBytes: number;
  /** Inflated bytes of one object, a delta's result included (--max-object-size). */
  objectBytes: number;
  /** Inflated bytes of all the objects of one push together, deltas' results included (--max-push-inflated-size). */
  inflatedBytes: number;
  /** Deltas between an object and the whole object it is rebuilt from (--max-delta-depth). */
  deltaDepth: number;
  /** Objects in one push's pack (--max-push-objects). */
  objects: number;
  /** Ref updates in one push (--max-push-refs). */
  refs: number;
}

/**
 * The defaults, chosen to stay clear of real repositories while bounding the work: git itself
 * never builds delta chains deeper than 4095 (its default is 50); an app's repository of a
 * million objects or a 2 GiB pack is already an outlier. The inflated total bounds what a pack
 * of deltas each just under the object cap could cost (every byte of a result is copied and
 * hashed): 16 GiB is eight times the largest pack at a typical ratio.
 */
export const DEFAULT_PUSH_LIMITS: PushLimits = {
  packBytes: 2 * 1024 ** 3,
  objectBytes: 256 * 1024 ** 2,
  inflatedBytes: 16 * 1024 ** 3,
  deltaDepth: 1000,
  objects: 1_000_000,
  refs: 10_000,
};

/** The flag of each cap, as the refusal names it. */
export const PUSH_LIMIT_FLAGS: Readonly<Record<keyof PushLimits, string>> = {
  packBytes: '--max-pack-size',
  objectBytes: '--max-object-size',
  inflatedBytes: '--max-push-inflated-size',
  deltaDepth: '--max-delta-depth',
  objects: '--max-push-objects',
  refs: '--max-push-refs',
};

/**
 * The refusal of a push that goes beyond `cap`: a UserError `git_push_limit` whose message says
 * what was found, the cap and its flag, e.g. "push refused: the blob at offset 12 inflates to
 * 8 GiB, over the cap of 256 MiB set by berth serve --max-object-size".
 */
export function pushLimitError(cap: keyof PushLimits, found: string, limits: PushLimits): UserError {
  const value = cap === 'packBytes' || cap === 'objectBytes' || cap === 'inflatedBytes' ? formatBytes(limits[cap]) : String(limits[cap]);
  return new UserError('git_push_limit', `push refused: ${found}, over the cap of ${value} set by berth serve ${PUSH_LIMIT_FLAGS[cap]}`, {
    hint: `push less at once, or ask the operator to raise ${PUSH_LIMIT_FLAGS[cap]}`,
  });
}

/** Limits given in part, completed with the defaults. */
export function pushLimits(given: Partial<PushLimits> = {}): PushLimits {
  const out = { ...DEFAULT_PUSH_LIMITS };
  for (const key of Object.keys(out) as (keyof PushLimits)[]) {
    const v = given[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}
