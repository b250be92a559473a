// Finds the end of a chunked body (RFC 9112 §7.1) in a stream of buffers, checking its framing as
// it goes, so the proxy can pass the bytes on unchanged and know where the next message starts.
// Strict: hex sizes without spaces, CRLF only, at most 16 hex digits, no control characters.
import { HttpError } from './http1-head.ts';

const SIZE_FIRST = 0;
const SIZE = 1;
const EXTENSION = 2;
const SIZE_LF = 3;
const DATA = 4;
const DATA_CR = 5;
const DATA_LF = 6;
const TRAILER_START = 7;
const TRAILER_LINE = 8;
const TRAILER_LF = 9;
const END_LF = 10;
const DONE = 11;

/** Called with each run of body data (the bytes inside chunks, without the framing). */
export type ChunkData = (buf: Buffer, start: number, end: number) => void;

export class ChunkedBody {
  #state = SIZE_FIRST;
  #remaining = 0;
  #digits = 0;
  #lineLength = 0;
  /** Data bytes seen so far (the decoded length), for size limits. */
  dataBytes = 0;

  get done(): boolean {
    return this.#state === DONE;
  }

  /**
   * Scans `buf` from `start`. Returns the index just past the end of the body when it ends in this
   * buffer, or -1 when every byte belongs to the body and more is needed. Throws an HttpError on
   * broken framing. `onData`, when given, receives the decoded data runs.
   */
  feed(buf: Buffer, start: number, onData?: ChunkData): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      const c = buf[i]!;
      switch (this.#state) {
        case SIZE_FIRST:
        case SIZE: {
          const v = hexValue(c);
          if (v !== -1) {
            if (++this.#digits > 16) throw new HttpError(400, 'chunk size too large');
            this.#remaining = this.#remaining * 16 + v;
            this.#state = SIZE;
          } else if (this.#state === SIZE && c === 0x3b /* ; */) this.#state = EXTENSION;
          else if (this.#state === SIZE && c === 0x0d) this.#state = SIZE_LF;
          else throw new HttpError(400, 'invalid chunk size');
          i++;
          break;
        }
        case EXTENSION:
          if (c === 0x0d) this.#state = SIZE_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw new HttpError(400, 'invalid chunk extension');
          else if (++this.#lineLength > 4096) throw new HttpError(400, 'chunk extension too long');
          i++;
          break;
        case SIZE_LF:
          if (c !== 0x0a) throw new HttpError(400, 'chunk size line without CRLF');
          i++;
          this.#digits = 0;
          this.#lineLength = 0;
          if (this.#remaining === 0) this.#state = TRAILER_START;
          else {
            if (!Number.isSafeInteger(this.#remaining)) throw new HttpError(400, 'chunk size too large');
            this.#state = DATA;
          }
          break;
        case DATA: {
          const take = Math.min(this.#remaining, n - i);
          if (onData) onData(buf, i, i + take);
          i += take;
          this.dataBytes += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = DATA_CR;
          break;
        }
        case DATA_CR:
          if (c !== 0x0d) throw new HttpError(400, 'chunk data longer than its size');
          this.#state = DATA_LF;
          i++;
          break;
        case DATA_LF:
          if (c !== 0x0a) throw new HttpError(400, 'chunk data without CRLF');
          this.#state = SIZE_FIRST;
          i++;
          break;
        case TRAILER_START:
          if (c === 0x0d) this.#state = END_LF;
          else {
            this.#state = TRAILER_LINE;
            this.#lineLength = 0;
            continue; // the byte is part of the trailer line
          }
          i++;
          break;
        case TRAILER_LINE:
          if (c === 0x0d) this.#state = TRAILER_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw new HttpError(400, 'invalid trailer line');
          else if (++this.#lineLength > 16384) throw new HttpError(400, 'trailer line too long');
          i++;
          break;
        case TRAILER_LF:
          if (c !== 0x0a) throw new HttpError(400, 'trailer line without CRLF');
          this.#state = TRAILER_START;
          i++;
          break;
        case END_LF:
          if (c !== 0x0a) throw new HttpError(400, 'chunked body without its final CRLF');
          this.#state = DONE;
          return i + 1;
        default:
          return i;
      }
    }
    return this.#state === DONE ? i : -1;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
