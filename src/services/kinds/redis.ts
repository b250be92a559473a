// Redis as a backing service, as the official image runs it: a password required, data saved as
// RDB snapshots in /data (a minute after any change, and on shutdown); exports are RDB snapshots
// and an import replaces the RDB file, which the server loads when it starts.
import type { KindCommand, ServiceKind, ServiceRecordView } from './kind.ts';

const DATA_DIR = '/data';

export const redis: ServiceKind = {
  name: 'redis',
  urlVariable: 'REDIS_URL',
  defaultImage: 'redis:7',
  port: 6379,
  dataDir: DATA_DIR,
  dumpExtension: '.rdb',

  containerEnv: () => [],
  // No append-only file: the server would load that instead of an imported RDB file. An export
  // is a replica's snapshot (redis-cli --rdb): started at once, not after the 5 s a server waits
  // by default for more replicas to share it.
  containerCommand: (s) => ['redis-server', '--requirepass', s.password, '--dir', DATA_DIR, '--appendonly', 'no', '--save', '60 1', '--repl-diskless-sync-delay', '0'],
  url: (s, host) => `redis://:${encodeURIComponent(s.password)}@${host}:6379`,

  // PING answers an error (exit status 0) while the server loads its data: only PONG is ready.
  readyCommand: (s) => cli(s, ['sh', '-c', 'test "$(redis-cli ping)" = PONG']),
  versionCommand: (s) => cli(s, ['sh', '-c', `redis-cli info server | sed -n 's/^redis_version:\\([^\\r]*\\).*/\\1/p'`]),
  connectCommand: (s) => cli(s, ['redis-cli']),
  exportCommand: (s) => cli(s, ['redis-cli', '--rdb', '-']),
  importCommand: (s) => ({
    replace: 'data-file',
    file: `${DATA_DIR}/dump.rdb`,
    user: 'redis',
    check: (path) => ({ cmd: ['redis-check-rdb', path], user: 'redis' }),
    // No snapshot from now on (nor on shutdown), and none still being written.
    hold: cli(s, ['sh', '-c', `redis-cli config set save '' >/dev/null && while redis-cli info persistence | grep -q '^rdb_bgsave_in_progress:1'; do sleep 0.1; done`]),
  }),
};

/** redis-cli in the container, the password in its environment (not on its command line). */
function cli(s: ServiceRecordView, cmd: string[]): KindCommand {
  return { cmd, env: [`REDISCLI_AUTH=${s.password}`] };
}
