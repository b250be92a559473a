// The one validator for domain names that users give (domains:add, domains:set): a fully
// qualified DNS name, normalised to lowercase ASCII; and which names a public CA can certify.
import { domainToASCII } from 'node:url';
import { UserError } from './errors.ts';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Returns the name in canonical form (lowercase, punycode for international names, no trailing
 * dot), or throws a UserError that says what is wrong with it.
 */
export function validateDomainName(input: string): string {
  const shown = JSON.stringify(input.length > 80 ? input.slice(0, 80) + '…' : input);
  const bad = (why: string, hint = 'a domain is a fully qualified DNS name such as www.example.com') =>
    new UserError('invalid_domain', `invalid domain ${shown}: ${why}`, { hint });
  let name = input.trim().toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '') throw bad('it is empty');
  if (name.includes('*')) throw bad('wildcard domains are not supported', 'add each host name on its own (wildcard certificates would need DNS-01, which berth does not do)');
  if (/[:/@\s]/.test(name)) throw bad('give the host name alone, without a scheme, port, path or spaces');
  // International names become their ASCII (punycode) form, which is what DNS and TLS carry.
  if (/[^\x00-\x7f]/.test(name)) {
    const ascii = domainToASCII(name);
    if (ascii === '') throw bad('it is not a valid international domain name');
    name = ascii;
  }
  if (name.length > 253) throw bad('it is longer than 253 characters');
  const labels = name.split('.');
  if (labels.length < 2) throw bad('it has a single label', 'give the full name, such as www.example.com');
  for (const label of labels) {
    if (!LABEL.test(label)) throw bad(`"${label}" is not a DNS label (letters, digits and inner dashes, 1 to 63 characters)`);
  }
  if (/^\d+$/.test(labels.at(-1)!)) throw bad('IP addresses are not domains', 'point a DNS name at the server and add that name');
  return name;
}

/** Names no public CA will certify: they only resolve on a private network or this machine. */
const PRIVATE_SUFFIXES = ['localhost', 'local', 'internal', 'home.arpa', 'invalid', 'lan'];

/** Whether an ACME CA can be asked for a certificate for this (already validated) name. */
export function qualifiesForAcme(name: string): boolean {
  if (!name.includes('.')) return false;
  if (/^[\d.]+$/.test(name) || name.includes(':')) return false;
  return !PRIVATE_SUFFIXES.some((suffix) => name === suffix || name.endsWith('.' + suffix));
}
