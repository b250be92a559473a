// --dashboard-listen: HOST:PORT (an IPv6 host in brackets), or off.
import { METRICS_LISTEN } from '../config.ts';
import { UserError } from '../errors.ts';

/** `HOST:PORT` → its parts; undefined for off; a UserError when it is neither. */
export function parseDashboardListen(value: string): { host: string; port: number } | undefined {
  if (value === '' || value === 'off') return undefined;
  const m = METRICS_LISTEN.exec(value);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new UserError('invalid_dashboard_listen', `--dashboard-listen: "${value}" is not HOST:PORT`, { hint: 'give an address and port such as 127.0.0.1:9181, or off' });
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}
