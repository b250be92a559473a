// Certificates on disk, under the data dir's certs/ folder. Each certificate is one file holding
// its chain and then its key, replaced atomically with mode 0600, so a crash never pairs a new
// key with an old chain:
//   certs/acme/<directory>/<domain>.pem   obtained from the ACME directory <directory>
//   certs/custom/<app>.pem                 given with certs:add
//   certs/accounts/<directory>.json        the ACME account of that directory
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { log } from '../../log.ts';
import { writeFileAtomic } from '../../state/atomic-file.ts';
import { parseCertificateBundle, splitPem, type CertificateBundle } from './certificate.ts';

export class CertificateStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** Where the account of an ACME directory is kept. */
  accountFile(directory: string): string {
    return path.join(this.root, 'accounts', `${directorySlug(directory)}.json`);
  }

  managedFile(directory: string, domain: string): string {
    return path.join(this.root, 'acme', directorySlug(directory), `${domain}.pem`);
  }

  customFile(app: string): string {
    return path.join(this.root, 'custom', `${app}.pem`);
  }

  readManaged(directory: string, domain: string): Promise<CertificateBundle | undefined> {
    return readBundle(this.managedFile(directory, domain));
  }

  writeManaged(directory: string, domain: string, bundle: CertificateBundle): Promise<void> {
    return writeBundle(this.managedFile(directory, domain), bundle);
  }

  readCustom(app: string): Promise<CertificateBundle | undefined> {
    return readBundle(this.customFile(app));
  }

  writeCustom(app: string, bundle: CertificateBundle): Promise<void> {
    return writeBundle(this.customFile(app), bundle);
  }

  /** Moves an app's custom certificate to its new name (apps:rename); none is fine. */
  async renameCustom(from: string, to: string): Promise<void> {
    await fs.rename(this.customFile(from), this.customFile(to)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  async removeCustom(app: string): Promise<void> {
    await fs.rm(this.customFile(app), { force: true });
  }

  /** The apps that have a custom certificate file. */
  async customApps(): Promise<string[]> {
    try {
      return (await fs.readdir(path.join(this.root, 'custom'))).filter((f) => f.endsWith('.pem')).map((f) => f.slice(0, -'.pem'.length));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }
}

/**
 * A readable folder name for an ACME directory URL, unique by a short hash:
 * `acme-v02.api.letsencrypt.org-3d1c5a9e`.
 */
export function directorySlug(directory: string): string {
  const host = new URL(directory).host.toLowerCase().replace(/[^a-z0-9.-]/g, '_');
  return `${host}-${createHash('sha256').update(directory).digest('hex').slice(0, 8)}`;
}

/** The bundle in a file; undefined when there is none, or when it cannot be used (logged: it is replaced by the next order). */
async function readBundle(file: string): Promise<CertificateBundle | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const { certs, keys } = splitPem(text);
    return parseCertificateBundle(certs.join(''), keys.join(''));
  } catch (e) {
    log.error('certificate_file_unusable', { file, error: e });
    return undefined;
  }
}

function writeBundle(file: string, bundle: CertificateBundle): Promise<void> {
  return writeFileAtomic(file, bundle.certPem + bundle.keyPem, 0o600);
}
