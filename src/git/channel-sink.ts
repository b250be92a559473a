// Writes to an SSH channel (or any stream) with its backpressure made visible to the producer:
// a write the channel cannot take now returns a promise that settles once it has drained, so
// whoever produces the output (build, `logs -t`, `run`) stops reading its source until the
// client has caught up, instead of berth buffering what a slow or stalled client does not read.
import type { Writable } from 'node:stream';

/** Writes `data`; returns a promise when the stream is full: produce nothing more until it settles. */
export type Sink = (data: string | Buffer) => void | Promise<void>;

/** A Sink over `stream`; writes after the stream closed are dropped. */
export function channelSink(stream: Writable, transform: (data: string | Buffer) => string | Buffer = (d) => d): Sink {
  let draining: Promise<void> | undefined;
  return (data) => {
    if (stream.destroyed || stream.writableEnded) return;
    if (stream.write(transform(data))) return;
    draining ??= new Promise<void>((resolve) => {
      const done = () => {
        stream.off('drain', done);
        stream.off('close', done);
        draining = undefined;
        resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
    return draining;
  };
}
