// Closing an HTTP server at once: stop listening and close every connection, idle or not (a
// scrape or an event stream left open would hold close() until the client goes).
import type http from 'node:http';

export function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
