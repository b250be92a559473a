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
