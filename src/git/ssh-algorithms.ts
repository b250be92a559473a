// The transport algorithms the SSH server offers: only those ssh-audit and the hardening guides
// pass (no NIST-curve key exchange, no SHA-1, MACs only in encrypt-then-MAC mode, no
// compression), all of which OpenSSH has spoken since 6.5. ssh2 adds its own
// `kex-strict-s-v00@openssh.com` (the Terrapin countermeasure) to the key exchange list.
import type { CipherAlgorithm, CompressionAlgorithm, KexAlgorithm, MacAlgorithm, ServerHostKeyAlgorithm } from 'ssh2';

export const SSH_ALGORITHMS: { kex: KexAlgorithm[]; serverHostKey: ServerHostKeyAlgorithm[]; cipher: CipherAlgorithm[]; hmac: MacAlgorithm[]; compress: CompressionAlgorithm[] } = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'diffie-hellman-group16-sha512', 'diffie-hellman-group18-sha512'],
  // The host key is ed25519 (host-key.ts); no other kind is made or offered.
  serverHostKey: ['ssh-ed25519'],
  cipher: ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-gcm@openssh.com', 'aes256-ctr', 'aes192-ctr', 'aes128-ctr'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  // Packs are compressed already, and compression before authentication is attack surface.
  compress: ['none'],
};
