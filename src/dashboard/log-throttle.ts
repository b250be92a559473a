// A log line that a client can cause at will (a refused login), written at most once a minute per
// client address; the next one says how many were left out in between.
import { log, type LogFields } from '../log.ts';

export const THROTTLE_MS = 60_000;
/** Addresses remembered at once; past this, the one remembered longest is forgotten. */
export const MAX_THROTTLED = 1000;

export class LogThrottle {
  readonly #event: string;
  readonly #now: () => number;
  readonly #write: (event: string, fields: LogFields) => void;
  /** address → when its last line was written, and lines left out since. */
  readonly #seen = new Map<string, { at: number; left: number }>();

  constructor(event: string, options: { now?: () => number; write?: (event: string, fields: LogFields) => void } = {}) {
    this.#event = event;
    this.#now = options.now ?? Date.now;
    this.#write = options.write ?? ((e, fields) => log.warn(e, fields));
  }

  note(address: string, fields: LogFields = {}): void {
    const now = this.#now();
    const seen = this.#seen.get(address);
    if (seen && now - seen.at < THROTTLE_MS) {
      seen.left++;
      return;
    }
    this.#seen.delete(address);
    this.#seen.set(address, { at: now, left: 0 });
    if (this.#seen.size > MAX_THROTTLED) this.#seen.delete(this.#seen.keys().next().value!);
    this.#write(this.#event, { address, ...fields, ...(seen?.left ? { leftOut: seen.left } : {}) });
  }
}
