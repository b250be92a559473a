// How users reach a host name through berth's proxy: over HTTPS (on the HTTPS port) once its
// certificate is served, else over plain HTTP. Used for an app's URL and the dashboard's link.
import type { Config } from './config.ts';

export function publicOrigin(host: string, config: Pick<Config, 'httpPort' | 'httpsPort'>, certificateServed: boolean): string {
  if (certificateServed) return `https://${host}${config.httpsPort === 443 ? '' : `:${config.httpsPort}`}`;
  return `http://${host}${config.httpPort === 80 ? '' : `:${config.httpPort}`}`;
}
