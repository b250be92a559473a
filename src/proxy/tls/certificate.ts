// A certificate chain with its private key, checked and described with Node's own X.509 parser:
// which names it covers, when it expires, who issued it, and whether the key belongs to it.
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { UserError } from '../../errors.ts';

export interface CertificateInfo {
  /** DNS names of the subjectAltName extension (the subject's CN when there is none). */
  readonly names: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The issuer's common name, or its whole distinguished name when it has none. */
  readonly issuer: string;
  readonly serial: string;
  /** SHA-256 of the leaf certificate, hex. */
  readonly fingerprint: string;
}

/** The leaf first, then the rest of the chain as given; the key in PKCS#8 or its original PEM. */
export interface CertificateBundle {
  readonly certPem: string;
  readonly keyPem: string;
  readonly info: CertificateInfo;
  /** Node's parsed leaf, for name checks. */
  readonly leaf: X509Certificate;
}

/** A PEM label: `CERTIFICATE`, `PRIVATE KEY`, `EC PRIVATE KEY`, ... */
const PEM_LABEL = /^[A-Z0-9 ]+$/;

/**
 * The PEM blocks of a text, split into certificates and private keys. Linear in the text's
 * length, whatever it holds: every END marker is found in one pass first, and each BEGIN takes
 * the next END of its label from there (a backtracking regular expression took quadratic time
 * over many BEGIN lines without an END).
 */
export function splitPem(text: string): { certs: string[]; keys: string[] } {
  const certs: string[] = [];
  const keys: string[] = [];
  const ends = new Map<string, number[]>();
  for (let at = text.indexOf('-----END '); at >= 0; at = text.indexOf('-----END ', at + 1)) {
    const close = text.indexOf('-----', at + 9);
    if (close < 0) break;
    const label = text.slice(at + 9, close);
    if (!PEM_LABEL.test(label)) continue;
    const list = ends.get(label);
    if (list) list.push(at);
    else ends.set(label, [at]);
  }
  const next = new Map<string, number>();
  for (let at = text.indexOf('-----BEGIN '); at >= 0; ) {
    const close = text.indexOf('-----', at + 11);
    if (close < 0) break;
    const label = text.slice(at + 11, close);
    const list = PEM_LABEL.test(label) ? ends.get(label) : undefined;
    let i = next.get(label) ?? 0;
    // The body holds at least one character.
    while (list && i < list.length && list[i]! <= close + 5) i++;
    next.set(label, i);
    if (!list || i >= list.length) {
      at = text.indexOf('-----BEGIN ', at + 1);
      continue;
    }
    const end = list[i]! + `-----END ${label}-----`.length;
    if (label === 'CERTIFICATE') certs.push(text.slice(at, end) + '\n');
    else if (label.endsWith('PRIVATE KEY')) keys.push(text.slice(at, end) + '\n');
    at = text.indexOf('-----BEGIN ', end);
  }
  return { certs, keys };
}

/**
 * Checks a chain and its key: every certificate parses, the key is a usable unencrypted private
 * key, and it belongs to one certificate of the chain (which is put first if it was not).
 * Problems are UserErrors that say what to fix.
 */
export function parseCertificateBundle(certText: string, keyText: string): CertificateBundle {
  const { certs } = splitPem(certText);
  if (certs.length === 0) throw new UserError('invalid_certificate', 'no PEM certificate found (-----BEGIN CERTIFICATE-----)', { hint: 'give the certificate chain in PEM form, the server certificate first' });
  const parsed = certs.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (e) {
      throw new UserError('invalid_certificate', `certificate ${i + 1} of the chain cannot be read: ${(e as Error).message}`, { cause: e });
    }
  });
  const { keys } = splitPem(keyText);
  if (keys.length !== 1) {
    throw new UserError('invalid_key', keys.length === 0 ? 'no PEM private key found (-----BEGIN PRIVATE KEY-----)' : `expected one private key, found ${keys.length}`, {
      hint: 'give the private key of the certificate, unencrypted, in PEM form',
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keys[0]!);
  } catch (e) {
    const encrypted = /ENCRYPTED/.test(keys[0]!) || /passphrase/i.test((e as Error).message);
    throw new UserError('invalid_key', encrypted ? 'the private key is encrypted' : `the private key cannot be read: ${(e as Error).message}`, {
      hint: encrypted ? 'decrypt it first, e.g. openssl pkey -in key.pem -out plain.pem' : 'give an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)',
      cause: e,
    });
  }
  const leafIndex = parsed.findIndex((cert) => safeCheckKey(cert, key));
  if (leafIndex === -1) {
    throw new UserError('key_mismatch', 'the private key does not match the certificate', { hint: 'give the key that was used to request this certificate' });
  }
  const order = [leafIndex, ...parsed.keys()].filter((i, n, all) => all.indexOf(i) === n);
  const leaf = parsed[leafIndex]!;
  return {
    certPem: order.map((i) => certs[i]!).join(''),
    keyPem: keys[0]!,
    info: describe(leaf),
    leaf,
  };
}

/** Whether the certificate is valid for `hostname` (one-label wildcards match, as browsers do). */
export function covers(bundle: CertificateBundle, hostname: string): boolean {
  return bundle.leaf.checkHost(hostname, { subject: 'default', wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined;
}

/** Whether the certificate is within its validity period at `now`. */
export function isCurrent(bundle: CertificateBundle, now = Date.now()): boolean {
  return bundle.info.notBefore.getTime() <= now && now < bundle.info.notAfter.getTime();
}

function describe(leaf: X509Certificate): CertificateInfo {
  const names = sanNames(leaf.subjectAltName);
  const subjectCn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.subject)?.[1];
  const issuerCn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.issuer)?.[1];
  return Object.freeze({
    names: Object.freeze(names.length > 0 ? names : subjectCn ? [subjectCn.toLowerCase()] : []),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    issuer: issuerCn ?? leaf.issuer.split('\n').join(', '),
    serial: leaf.serialNumber.toLowerCase(),
    fingerprint: createHash('sha256').update(leaf.raw).digest('hex'),
  });
}

// Node renders the extension as `DNS:a.example, DNS:b.example, IP Address:1.2.3.4` (values with
// commas are quoted); only the DNS names matter here.
function sanNames(san: string | undefined): string[] {
  if (!san) return [];
  const names: string[] = [];
  for (const match of san.matchAll(/(?:^|, )DNS:(?:"((?:[^"\\]|\\.)*)"|([^,]*))/g)) names.push((match[1] ?? match[2] ?? '').toLowerCase());
  return names.filter((n) => n !== '');
}

function safeCheckKey(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false;
  }
}
