// An upgraded connection (a WebSocket, or any protocol after 101 Switching Protocols): bytes are
// spliced both ways with backpressure. For a WebSocket the frame boundaries are followed in both
// directions, so a drain can close it cleanly: a close frame (1001 "going away") to each side at a
// frame boundary, then FIN.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Closable, TargetState } from './target-state.ts';

/** When a tunnel closes, how long the bytes still queued for a side get to go out before it is cut. */
export const TUNNEL_FLUSH_MS = 5_000;
/** A clean close waits this long for a frame in progress to end before it cuts the connection. */
export const FRAME_WAIT_MS = 2_000;

export class Tunnel implements Closable {
  readonly #client: Socket;
  readonly #upstream: Socket;
  readonly #target: TargetState;
  /** Frames from the app to the client (unmasked); undefined when not a WebSocket. */
  readonly #down: FrameTracker | undefined;
  /** Frames from the client to the app (masked). */
  readonly #up: FrameTracker | undefined;
  #closing: string | undefined;
  #sentDown = false;
  #sentUp = false;
  #open = 2;
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor(options: { client: Socket; upstream: Socket; target: TargetState; websocket: boolean; fromClient?: Buffer; fromUpstream?: Buffer }) {
    this.#client = options.client;
    this.#upstream = options.upstream;
    this.#target = options.target;
    if (options.websocket) {
      this.#down = new FrameTracker();
      this.#up = new FrameTracker();
    }
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    const client = this.#client;
    const upstream = this.#upstream;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', this.#onClientData);
    upstream.on('data', this.#onUpstreamData);
    client.on('drain', () => upstream.resume());
    upstream.on('drain', () => client.resume());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    // One side ending ends the other once what it sent last (a close frame, typically) is out.
    client.on('end', () => flushThenDestroy(upstream));
    upstream.on('end', () => flushThenDestroy(client));
    client.on('close', this.#onSocketClose);
    upstream.on('close', this.#onSocketClose);
    client.on('close', () => flushThenDestroy(upstream));
    upstream.on('close', () => flushThenDestroy(client));
    this.#target.addTunnel(this);
    if (options.fromUpstream && options.fromUpstream.length > 0) this.#onUpstreamData(options.fromUpstream);
    if (options.fromClient && options.fromClient.length > 0) this.#onClientData(options.fromClient);
    client.resume();
    upstream.resume();
  }

  /**
   * Closes the tunnel: a WebSocket gets a close frame on each side at the next frame boundary
   * (1001, `reason`), anything else a FIN. Resolves when both sockets are closed.
   */
  close(reason: string): Promise<void> {
    if (this.#closing === undefined) {
      this.#closing = reason;
      if (!this.#down || !this.#up) {
        flushThenDestroy(this.#client);
        flushThenDestroy(this.#upstream);
      } else {
        if (this.#down.atBoundary) this.#sendCloseDown();
        if (this.#up.atBoundary) this.#sendCloseUp();
        setTimeout(() => {
          this.#client.destroy();
          this.#upstream.destroy();
        }, FRAME_WAIT_MS + TUNNEL_FLUSH_MS).unref();
        setTimeout(() => {
          if (!this.#sentDown) this.#client.destroy();
          if (!this.#sentUp) this.#upstream.destroy();
        }, FRAME_WAIT_MS).unref();
      }
    }
    return this.#closed;
  }

  readonly #onClientData = (chunk: Buffer): void => {
    let data = chunk;
    if (this.#up && this.#closing !== undefined) {
      if (this.#sentUp) return; // after the close frame nothing more goes to the app
      const boundary = this.#up.firstBoundary(chunk);
      if (boundary !== -1) {
        data = chunk.subarray(0, boundary);
        if (data.length > 0) this.#upstream.write(data);
        this.#sendCloseUp();
        return;
      }
    } else this.#up?.scan(chunk);
    if (!this.#upstream.write(data)) this.#client.pause();
  };

  readonly #onUpstreamData = (chunk: Buffer): void => {
    let data = chunk;
    if (this.#down && this.#closing !== undefined) {
      if (this.#sentDown) return;
      const boundary = this.#down.firstBoundary(chunk);
      if (boundary !== -1) {
        data = chunk.subarray(0, boundary);
        if (data.length > 0) this.#client.write(data);
        this.#sendCloseDown();
        return;
      }
    } else this.#down?.scan(chunk);
    if (!this.#client.write(data)) this.#upstream.pause();
  };

  #sendCloseDown(): void {
    this.#sentDown = true;
    if (!this.#client.destroyed) this.#client.end(closeFrame(this.#closing ?? '', false));
  }

  #sendCloseUp(): void {
    this.#sentUp = true;
    if (!this.#upstream.destroyed) this.#upstream.end(closeFrame(this.#closing ?? '', true));
  }

  readonly #onSocketClose = (): void => {
    if (--this.#open > 0) return;
    this.#target.removeTunnel(this);
    this.#resolveClosed();
  };
}

/**
 * Follows WebSocket frame boundaries (RFC 6455 §5.2) in a byte stream: header (2-14 bytes), then
 * the payload. It only counts; it never changes or buffers bytes.
 */
export class FrameTracker {
  /** Header bytes still expected (0 while in a payload or at a boundary). */
  #headerNeeded = 0;
  readonly #header = Buffer.alloc(14);
  #headerHave = 0;
  #payloadLeft = 0;

  get atBoundary(): boolean {
    return this.#headerHave === 0 && this.#payloadLeft === 0;
  }

  /** Follows all of `chunk`. */
  scan(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) i = this.#step(chunk, i);
  }

  /** Follows `chunk` up to the first frame boundary and returns its index (0 when already at one), or -1 when none. */
  firstBoundary(chunk: Buffer): number {
    if (this.atBoundary) return 0;
    let i = 0;
    while (i < chunk.length) {
      i = this.#step(chunk, i);
      if (this.atBoundary) return i;
    }
    return -1;
  }

  #step(chunk: Buffer, i: number): number {
    if (this.#payloadLeft > 0) {
      const take = Math.min(this.#payloadLeft, chunk.length - i);
      this.#payloadLeft -= take;
      return i + take;
    }
    // In a header: collect its bytes until its length is known and complete.
    this.#header[this.#headerHave++] = chunk[i]!;
    if (this.#headerHave === 2) {
      const len7 = this.#header[1]! & 0x7f;
      const masked = (this.#header[1]! & 0x80) !== 0;
      this.#headerNeeded = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    }
    if (this.#headerHave >= 2 && this.#headerHave === this.#headerNeeded) {
      const len7 = this.#header[1]! & 0x7f;
      this.#payloadLeft = len7 === 126 ? this.#header.readUInt16BE(2) : len7 === 127 ? Number(this.#header.readBigUInt64BE(2)) : len7;
      this.#headerHave = 0;
      this.#headerNeeded = 0;
    }
    return i + 1;
  }
}

/** A close frame with status 1001 (going away); masked when it goes to the app, as client frames must be. */
export function closeFrame(reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason.slice(0, 120), 'utf8').subarray(0, 123);
  const payload = Buffer.concat([Buffer.from([0x03, 0xe9]), text]);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, payload]);
}

function flushThenDestroy(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.writableLength === 0) {
    socket.destroy();
    return;
  }
  socket.end(() => socket.destroy());
  // A peer that stops reading must not hold the socket open forever.
  setTimeout(() => socket.destroy(), TUNNEL_FLUSH_MS).unref();
}
