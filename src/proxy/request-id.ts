// Request ids for X-Request-Id: a random prefix made once per process, then a counter. Unique
// within a run by the counter and across runs by the 64 random bits; cheaper than a UUID per
// request (one short string, no random bytes), and 25 characters, so another proxy that passes
// on ids of 20-200 characters (Heroku's rule, berth's too) keeps it.
import { randomBytes } from 'node:crypto';

const PREFIX = randomBytes(8).toString('hex') + '-';
let counter = 0;

export function newRequestId(): string {
  counter = (counter + 1) % 0x100000000;
  return PREFIX + counter.toString(16).padStart(8, '0');
}

/** What newRequestId() makes: 16 hex digits, a dash, 8 hex digits. */
export const GENERATED_ID = /^[0-9a-f]{16}-[0-9a-f]{8}$/;
