// Reads a stream to its end: standard input of a command, from a terminal, a pipe or an SSH
// channel. A stream that closes before its end (the client went away) is an error, not input.
import { UserError } from './errors.ts';

export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    stream.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    stream.on('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks));
    });
    stream.on('close', () => {
      if (!ended) reject(new UserError('client_disconnected', 'the client went away before it finished sending standard input'));
    });
    stream.on('error', reject);
  });
}

/**
 * Reads a stream to its end, refusing more than `maxBytes` with a UserError (`input_too_large`)
 * as soon as they arrive; what was read is dropped and the rest left unread. `what` names the
 * input in the message.
 */
export function readAtMost(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (e: Error | undefined) => {
      if (settled) return;
      settled = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', finish);
      stream.on('error', () => undefined);
      if (e) reject(e);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (c: Buffer | string) => {
      const chunk = Buffer.from(c);
      size += chunk.length;
      if (size > maxBytes) {
        stream.pause();
        finish(new UserError('input_too_large', `${what}: more than ${maxBytes / 1024} KiB, the most accepted`, { hint: 'give only what the command needs' }));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish(undefined);
    const onClose = () => finish(new UserError('client_disconnected', 'the client went away before it finished sending standard input'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', finish);
  });
}
