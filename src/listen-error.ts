// What a listener reports when it cannot bind: a port or socket path in use (or not permitted)
// is the operator's to fix, so it is a UserError that names the listener, the address and the
// flag that changes it; anything else stays a bug. Every listener (HTTP, HTTPS, SSH, the control
// socket) calls this at its listen site.
import { UserError, wrapError } from './errors.ts';

export interface ListenSite {
  /** The listener, as users know it: `HTTP`, `HTTPS`, `SSH`, `control socket`. */
  what: string;
  /** Where it listens: `host:port`, or the socket's path. */
  address: string;
  /** What changes it: `--http-port`, `--data-dir` ... */
  flag: string;
}

export function listenError(e: unknown, site: ListenSite): Error {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const isPath = site.address.startsWith('/');
  if (code === 'EADDRINUSE') {
    return new UserError(isPath ? 'socket_in_use' : 'port_in_use', `cannot listen on ${site.address} (${site.what}): the ${isPath ? 'path' : 'port'} is already in use`, {
      hint: isPath ? `another process listens there: stop it, or choose another ${site.flag}` : `stop the other server on that port, or choose another with ${site.flag}`,
      cause: e,
    });
  }
  if (code === 'EACCES') {
    return new UserError(isPath ? 'socket_not_permitted' : 'port_not_permitted', `cannot listen on ${site.address} (${site.what}): permission denied`, {
      hint: isPath ? `berth needs to write there: fix the permissions, or choose another ${site.flag}` : `ports below 1024 need root or CAP_NET_BIND_SERVICE; or choose another with ${site.flag}`,
      cause: e,
    });
  }
  return wrapError(`${site.what}: listening on ${site.address}`, e);
}
