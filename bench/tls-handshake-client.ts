// Load generator for bench:tls: new TLS connections as fast as they complete, each with a full
// handshake (no session resumption: no session is ever offered back), closed right after it.
// Runs in its own process with worker threads; prints one JSON line: { handshakes, errors, ms }.
//   node bench/tls-handshake-client.ts PORT SERVERNAME SECONDS [WORKERS] [CONCURRENCY]
import tls from 'node:tls';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

interface Job {
  port: number;
  servername: string;
  seconds: number;
  concurrency: number;
}

if (isMainThread) {
  const [port, servername, seconds, workers = '2', concurrency = '16'] = process.argv.slice(2);
  if (!port || !servername || !seconds) {
    process.stderr.write('usage: tls-handshake-client.ts PORT SERVERNAME SECONDS [WORKERS] [CONCURRENCY]\n');
    process.exit(2);
  }
  const job: Job = { port: Number(port), servername, seconds: Number(seconds), concurrency: Number(concurrency) };
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: Number(workers) }, () => new Promise<{ handshakes: number; errors: number }>((resolve, reject) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: job });
      worker.once('message', resolve);
      worker.once('error', reject);
    })),
  );
  const total = results.reduce((a, r) => ({ handshakes: a.handshakes + r.handshakes, errors: a.errors + r.errors }), { handshakes: 0, errors: 0 });
  process.stdout.write(JSON.stringify({ ...total, ms: Math.round(performance.now() - started) }) + '\n');
} else {
  const job = workerData as Job;
  const deadline = performance.now() + job.seconds * 1000;
  let handshakes = 0;
  let errors = 0;
  const loop = () =>
    new Promise<void>((resolve) => {
      const next = () => {
        if (performance.now() >= deadline) return resolve();
        const socket = tls.connect({ host: '127.0.0.1', port: job.port, servername: job.servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
        socket.once('secureConnect', () => {
          handshakes++;
          socket.destroy();
          next();
        });
        socket.once('error', () => {
          errors++;
          socket.destroy();
          setTimeout(next, 10);
        });
      };
      next();
    });
  await Promise.all(Array.from({ length: job.concurrency }, loop));
  parentPort!.postMessage({ handshakes, errors });
}
