// git's pkt-line framing: encoding packets, a strict streaming reader, and side-band-64k packets.
import { UserError } from '../errors.ts';

/** The flush packet, `0000`. */
export const FLUSH: Buffer = Buffer.from('0000', 'latin1');

/** git's LARGE_PACKET_MAX: a whole packet, its 4-byte length included, is at most this long. */
export const MAX_PKT_LENGTH = 65520;
/** The most payload one packet carries. */
export const MAX_PKT_DATA = MAX_PKT_LENGTH - 4;
/** The most payload one side-band-64k packet carries (one byte goes to the band number). */
export const MAX_SIDEBAND_DATA = MAX_PKT_DATA - 1;

export type Packet = { type: 'data'; data: Buffer } | { type: 'flush' };

/** Band 1 carries the protocol (the report), band 2 progress the client shows, band 3 a fatal error. */
export type Band = 1 | 2 | 3;

/** Frames one packet. Throws when the payload does not fit (split it first). */
export function pkt(data: string | Buffer): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (body.length > MAX_PKT_DATA) throw new RangeError(`pkt-line payload of ${body.length} bytes exceeds ${MAX_PKT_DATA}`);
  const out = Buffer.allocUnsafe(body.length + 4);
  out.write((body.length + 4).toString(16).padStart(4, '0'), 0, 'latin1');
  body.copy(out, 4);
  return out;
}

/** Frames data for one side band, split into as many packets as needed. Empty data gives none. */
export function sideband(band: Band, data: string | Buffer): Buffer[] {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += MAX_SIDEBAND_DATA) {
    const part = body.subarray(at, Math.min(at + MAX_SIDEBAND_DATA, body.length));
    const framed = Buffer.allocUnsafe(part.length + 5);
    framed.write((part.length + 5).toString(16).padStart(4, '0'), 0, 'latin1');
    framed[4] = band;
    part.copy(framed, 5);
    out.push(framed);
  }
  return out;
}

/** Band 1: protocol data (the report-status stream) for a client that asked for side-band-64k. */
export function sidebandData(data: string | Buffer): Buffer[] {
  return sideband(1, data);
}

/** Band 2: progress text, shown by the client as `remote: ...` lines. */
export function sidebandProgress(text: string): Buffer[] {
  return sideband(2, text);
}

/** Band 3: a fatal error; the client prints it and gives up. */
export function sidebandError(text: string): Buffer[] {
  return sideband(3, text);
}

/** A packet's payload as text without its trailing newline (git allows either). */
export function packetText(data: Buffer): string {
  const end = data.length > 0 && data[data.length - 1] === 0x0a ? data.length - 1 : data.length;
  return data.toString('utf8', 0, end);
}

/**
 * Reads packets from bytes that arrive in arbitrary chunks. `push` appends, `next` returns the
 * next complete packet or undefined when more bytes are needed. Anything that is not a valid
 * v0 pkt-line (a non-hex length, a length of 1 to 3, one over 65520) throws a UserError with
 * code `git_protocol_error`. `leftover` hands over the bytes not consumed yet: the pack that
 * follows the command list usually arrives in the same chunk as its flush.
 */
export class PktLineReader {
  private buffer: Buffer = Buffer.alloc(0);
  private offset = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const pending = this.buffer.length - this.offset;
    // At most one partial packet (< 64 KiB) is ever kept, so this copy stays small.
    this.buffer = pending === 0 ? chunk : Buffer.concat([this.buffer.subarray(this.offset), chunk]);
    this.offset = 0;
  }

  next(): Packet | undefined {
    const available = this.buffer.length - this.offset;
    if (available < 4) return undefined;
    const length = parseLength(this.buffer.subarray(this.offset, this.offset + 4));
    if (length === 0) {
      this.offset += 4;
      return { type: 'flush' };
    }
    if (available < length) return undefined;
    const data = this.buffer.subarray(this.offset + 4, this.offset + length);
    this.offset += length;
    return { type: 'data', data };
  }

  /** How many bytes are buffered and not yet returned as packets. */
  get buffered(): number {
    return this.buffer.length - this.offset;
  }

  /** Takes the unconsumed bytes out of the reader. */
  leftover(): Buffer {
    const rest = this.buffer.subarray(this.offset);
    this.buffer = Buffer.alloc(0);
    this.offset = 0;
    return rest;
  }
}

function parseLength(head: Buffer): number {
  let length = 0;
  for (const byte of head) {
    const digit = hexDigit(byte);
    if (digit < 0) throw protocolError(`invalid pkt-line length ${JSON.stringify(head.toString('latin1'))}`);
    length = length * 16 + digit;
  }
  if (length !== 0 && length < 4) throw protocolError(`pkt-line length ${length} is not allowed here (only 0000 or 0004 and up)`);
  if (length > MAX_PKT_LENGTH) throw protocolError(`pkt-line length ${length} exceeds ${MAX_PKT_LENGTH}`);
  return length;
}

function hexDigit(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

function protocolError(message: string): UserError {
  return new UserError('git_protocol_error', message);
}
