// Postgres as a backing service, as the official image runs it: superuser `postgres` with the
// service's password, one database named after the service; dumps in pg_dump's custom format.
import { UserError } from '../../errors.ts';
import type { KindCommand, ServiceKind, ServiceRecordView } from './kind.ts';

const USER = 'postgres';

export const postgres: ServiceKind = {
  name: 'postgres',
  urlVariable: 'DATABASE_URL',
  defaultImage: 'postgres:17',
  port: 5432,
  dataDir: '/var/lib/postgresql/data',
  dumpExtension: '.dump',

  containerEnv: (s) => [`POSTGRES_PASSWORD=${s.password}`, `POSTGRES_USER=${USER}`, `POSTGRES_DB=${s.name}`],
  containerCommand: () => undefined,
  url: (s, host) => `postgres://${USER}:${encodeURIComponent(s.password)}@${host}:5432/${encodeURIComponent(s.name)}`,

  // Over TCP: while the entrypoint initialises the data directory, its temporary server listens
  // on the socket only, and is stopped again before the real one starts.
  readyCommand: (s) => client(s, ['pg_isready', '--quiet', '--host=127.0.0.1', '--port=5432', `--username=${USER}`, `--dbname=${s.name}`]),
  versionCommand: (s) => client(s, ['psql', '--no-psqlrc', '--tuples-only', '--no-align', '--command=SHOW server_version', `--username=${USER}`, `--dbname=${s.name}`]),
  connectCommand: (s) => client(s, ['psql', '--set=ON_ERROR_STOP=1', `--username=${USER}`, `--dbname=${s.name}`]),
  exportCommand: (s) => client(s, ['pg_dump', '--format=custom', '--no-owner', '--no-acl', `--username=${USER}`, `--dbname=${s.name}`]),
  importCommand(s, head) {
    if (head.subarray(0, 5).toString('latin1') === 'PGDMP') {
      // In one transaction: an input that fails part way leaves the database as it was.
      return client(s, ['pg_restore', '--clean', '--if-exists', '--no-owner', '--no-acl', '--single-transaction', `--username=${USER}`, `--dbname=${s.name}`]);
    }
    if (head[0] === 0x1f && head[1] === 0x8b) {
      throw new UserError('service_import_compressed', 'the input is gzip-compressed; postgres:import reads a pg_dump custom-format dump or plain SQL', { hint: 'decompress it on the way in: gunzip -c FILE | ssh ... postgres:import NAME' });
    }
    // Plain SQL in one transaction, which psql commits at the end of its input: an input cut off
    // part way would end like a whole one. It is received whole first, then loaded from the file.
    return {
      stage: 'file',
      dir: '/tmp',
      user: USER,
      load: (file) => ({ ...client(s, ['psql', '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction', `--file=${file}`, `--username=${USER}`, `--dbname=${s.name}`]), user: USER }),
    };
  },
};

/** A client of the server, over its socket in the container, with the password in its environment. */
function client(s: ServiceRecordView, cmd: string[]): KindCommand {
  return { cmd, env: [`PGPASSWORD=${s.password}`] };
}
