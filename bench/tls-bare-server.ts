// Reference point for bench:tls: Node's own TLS server with one certificate and no callbacks,
// so the gap between berth and nginx can be split into Node's TLS stack and berth's own work.
//   node bench/tls-bare-server.ts CERTFILE KEYFILE   (prints the port it listens on)
import fs from 'node:fs';
import tls from 'node:tls';

const [certFile, keyFile] = process.argv.slice(2);
if (!certFile || !keyFile) {
  process.stderr.write('usage: tls-bare-server.ts CERTFILE KEYFILE\n');
  process.exit(2);
}
const server = tls.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), ALPNProtocols: ['http/1.1'] }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.end();
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as import('node:net').AddressInfo).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
