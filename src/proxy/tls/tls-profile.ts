// The one TLS profile of the HTTPS listener, Mozilla's "intermediate": TLS 1.2 with ECDHE and
// AEAD ciphers only, TLS 1.3, and the groups X25519MLKEM768, X25519, P-256, P-384. The listener
// takes it (its settings decide the suites and groups of every handshake, whichever context SNI
// picks), and so does every context it serves, so that none is made with OpenSSL's wider defaults.
import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';

/**
 * TLS 1.3 suites first (OpenSSL's ciphersuites), then the TLS 1.2 ones in Mozilla's order. No CBC
 * (LUCKY13), no CCM, no ARIA, no static RSA key exchange, no finite-field DHE: each TLS 1.2 suite
 * is ECDHE with AES-GCM or ChaCha20-Poly1305.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Key-exchange groups, preferred first. The hybrid post-quantum X25519MLKEM768 (TLS 1.3 only; what
 * current browsers offer first) is kept from OpenSSL's defaults; secp521r1, X448 and the
 * finite-field groups are not offered.
 */
export const TLS_GROUPS = 'X25519MLKEM768:X25519:P-256:P-384';

/**
 * The profile as Node's TLS options. Client-initiated renegotiation is refused outright (it costs
 * the server a handshake per request of the client: a denial-of-service lever), and the client
 * picks among the suites, as Mozilla's profile says, since every one offered is strong.
 */
export const TLS_PROFILE: Readonly<Pick<SecureContextOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve' | 'secureOptions' | 'honorCipherOrder'>> = Object.freeze({
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.3',
  ciphers: TLS_CIPHERS,
  ecdhCurve: TLS_GROUPS,
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION,
  honorCipherOrder: false,
});

/** A secure context serving one certificate chain and its key with berth's profile. */
export function profileContext(certPem: string, keyPem: string): SecureContext {
  return createSecureContext({ ...TLS_PROFILE, cert: certPem, key: keyPem });
}
