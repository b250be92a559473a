// HTTP(S) requests the daemon makes for a tenant (buildpack fetches): only to public addresses.
// Each host name is resolved here, every address checked, and the connection made to the address
// that was checked (so a second DNS answer cannot swap it); each redirect is checked the same way.
// Loopback, link-local (cloud metadata), private, shared (CGNAT), unspecified, multicast and the
// server's own addresses are refused unless the admin allows the host (--fetch-allow-host).
// Answers are never quoted back: errors carry the status code, never a body or reason phrase.
import dns from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';

/** Who may be asked: the admin's --fetch-allow-host list (host names or addresses, any port). */
export interface FetchPolicy {
  allowHosts: readonly string[];
  /** How a host name is resolved (default: the system's resolver); a test gives its own answers. */
  resolve?: (host: string) => Promise<Array<{ address: string; family: number }>>;
}

export const PUBLIC_ONLY: FetchPolicy = { allowHosts: [] };

/** Most redirects followed for one request. */
export const MAX_REDIRECTS = 5;

/** A refusal by the policy: safe to show the pusher (it names only what they asked for). */
export class FetchRefused extends Error {
  override readonly name = 'FetchRefused';
}

export interface PublicResponse {
  /** The URL that answered, after redirects. */
  url: string;
  statusCode: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

const NOT_PUBLIC: Array<{ why: string; list: net.BlockList }> = (
  [
    ['0.0.0.0', 8, 'ipv4', 'unspecified'],
    ['10.0.0.0', 8, 'ipv4', 'private'],
    ['100.64.0.0', 10, 'ipv4', 'shared (CGNAT)'],
    ['127.0.0.0', 8, 'ipv4', 'loopback'],
    ['169.254.0.0', 16, 'ipv4', 'link-local'],
    ['172.16.0.0', 12, 'ipv4', 'private'],
    ['192.0.0.0', 24, 'ipv4', 'reserved'],
    ['192.168.0.0', 16, 'ipv4', 'private'],
    ['198.18.0.0', 15, 'ipv4', 'reserved'],
    ['224.0.0.0', 4, 'ipv4', 'multicast'],
    ['240.0.0.0', 4, 'ipv4', 'reserved'],
    ['::', 128, 'ipv6', 'unspecified'],
    ['::1', 128, 'ipv6', 'loopback'],
    ['fe80::', 10, 'ipv6', 'link-local'],
    ['fc00::', 7, 'ipv6', 'private'],
    ['ff00::', 8, 'ipv6', 'multicast'],
  ] as const
).map(([base, prefix, type, why]) => {
  const list = new net.BlockList();
  list.addSubnet(base, prefix, type);
  return { why, list };
});

/** Why `address` is not a public address, or undefined when it is one. */
export function notPublic(address: string): string | undefined {
  const family = net.isIP(address);
  if (family === 0) return 'not an address';
  // An IPv4 address carried in IPv6 (::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d) is judged as IPv4.
  const embedded = family === 6 ? embeddedIpv4(address) : undefined;
  if (embedded) return notPublic(embedded);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const hit = NOT_PUBLIC.find((r) => r.list.check(address, type));
  if (hit) return hit.why;
  if (ownAddresses().has(canonical(address))) return "this server's own";
  return undefined;
}

function embeddedIpv4(address: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:0:)?([0-9.]+)$/i.exec(address);
  if (m && net.isIPv4(m[1]!)) return m[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return undefined;
  const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
}

function canonical(address: string): string {
  return net.isIPv6(address) ? new URL(`http://[${address}]/`).hostname : address;
}

function ownAddresses(): Set<string> {
  const own = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) own.add(canonical(a.address.replace(/%.*$/, '')));
  return own;
}

/**
 * The address to connect to for `url`'s host: resolved once and checked, or the host itself when
 * the admin allows it. Rejects with FetchRefused.
 */
export async function checkedAddress(url: URL, policy: FetchPolicy): Promise<{ address: string; family: 4 | 6 } | undefined> {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (policy.allowHosts.some((h) => h.toLowerCase().replace(/^\[|\]$/g, '') === host)) return undefined;
  let addresses: Array<{ address: string; family: number }>;
  if (net.isIP(host)) addresses = [{ address: host, family: net.isIP(host) }];
  else {
    try {
      addresses = await (policy.resolve ?? ((h: string) => dns.lookup(h, { all: true, verbatim: true })))(host);
    } catch {
      throw new FetchRefused(`${host} could not be resolved`);
    }
  }
  for (const a of addresses) {
    const why = notPublic(a.address);
    if (why) throw new FetchRefused(`${host} is ${a.address === host ? '' : `at ${a.address}, `}a ${why} address: berth fetches only from public addresses (an admin may allow the host with --fetch-allow-host)`);
  }
  const first = addresses[0];
  if (!first) throw new FetchRefused(`${host} could not be resolved`);
  return { address: first.address, family: first.family === 6 ? 6 : 4 };
}

/**
 * One request to a public address, redirects followed (each checked); resolves once the answer's
 * head is in. A body is sent again only on a 307 or 308.
 */
export async function publicRequest(
  target: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer; policy: FetchPolicy; signal?: AbortSignal },
): Promise<PublicResponse> {
  let url = new URL(target);
  let method = options.method ?? 'GET';
  let body = options.body;
  let headers = { ...options.headers };
  for (let hop = 0; ; hop++) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchRefused(`a redirect leads to ${url.protocol} URL, not http(s)`);
    const at = await checkedAddress(url, options.policy);
    const res = await send(url, method, headers, body, at, options.signal);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && status !== 304 && location) {
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new FetchRefused(`more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, url);
      // Credentials go to the origin they were given for only, as curl and git do.
      if (next.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !/^(authorization|cookie)$/i.test(k)));
      url = next;
      if (status !== 307 && status !== 308) {
        method = method === 'HEAD' ? 'HEAD' : 'GET';
        body = undefined;
      }
      continue;
    }
    return { url: url.toString(), statusCode: status, headers: res.headers, body: res };
  }
}

function send(url: URL, method: string, headers: Record<string, string>, body: Buffer | undefined, at: { address: string; family: 4 | 6 } | undefined, signal: AbortSignal | undefined): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method,
      headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
      // The connection goes to the address that was checked, not to a second answer of DNS.
      ...(at
        ? {
            lookup: ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) =>
              opts.all ? cb(null, [{ address: at.address, family: at.family }]) : cb(null, at.address, at.family)) as unknown as net.LookupFunction,
          }
        : {}),
      ...(signal ? { signal } : {}),
    });
    request.once('response', resolve);
    request.once('error', reject);
    request.end(body);
  });
}
