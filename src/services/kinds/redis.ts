// Redis as a backing service, as the official image runs it: a password required, every write in
// the append-only file in /data, RDB snapshots beside it; exports are RDB snapshots, and an
// import makes the RDB the base of a new append-only file, which the server loads when it starts.
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
  // Every write in the append-only file (fsync'd each second), so a server killed loses at most
  // a second; snapshots still made for exports. An export is a replica's snapshot (redis-cli
  // --rdb): started at once, not after the 5 s a server waits by default for more replicas.
  containerCommand: (s) => ['redis-server', '--requirepass', s.password, '--dir', DATA_DIR, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '60 1', '--repl-diskless-sync-delay', '0'],
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
    // No snapshot nor append-only file from now on (nor on shutdown), and none still being written.
    hold: cli(s, ['sh', '-c', `redis-cli config set save '' >/dev/null && redis-cli config set appendonly no >/dev/null && while redis-cli info persistence | grep -Eq '^(rdb_bgsave|aof_rewrite)_in_progress:1'; do sleep 0.1; done`]),
    // With the append-only file on, the server loads that, not dump.rdb: the imported RDB becomes
    // the base of a new one (the multi-part AOF of Redis 7: a manifest naming an RDB-format base).
    swap: (path) => ({ user: 'redis', cmd: ['sh', '-ec', SWAP, 'sh', path] }),
    dropPrevious: { user: 'redis', cmd: ['sh', '-c', `cd ${DATA_DIR} && rm -rf dump.rdb.before-import appendonlydir.before-import`] },
    restorePrevious: { user: 'redis', cmd: ['sh', '-ec', RESTORE] },
  }),
};

const SWAP = `cd ${DATA_DIR}
rm -rf dump.rdb.before-import appendonlydir.before-import appendonlydir.importing
mkdir appendonlydir.importing
# A snapshot written to a pipe by redis-cli --rdb keeps the 40-byte end mark of a diskless
# transfer after the RDB's end (opcode 0xff, then an 8-byte checksum): loading an RDB ignores it,
# loading an append-only file's base would read it as commands. It is cut off here.
byte() { tail -c "$2" "$1" | head -c 1 | od -An -tx1 | tr -d ' \\n'; }
size=$(wc -c < "$1")
if [ "$(byte "$1" 9)" != ff ] && [ "$size" -gt 49 ] && [ "$(byte "$1" 49)" = ff ]; then
  head -c $((size - 40)) "$1" > appendonlydir.importing/appendonly.aof.1.base.rdb
else
  cp "$1" appendonlydir.importing/appendonly.aof.1.base.rdb
fi
printf 'file appendonly.aof.1.base.rdb seq 1 type b\\n' > appendonlydir.importing/appendonly.aof.manifest
if [ -e dump.rdb ]; then mv dump.rdb dump.rdb.before-import; fi
if [ -e appendonlydir ]; then mv appendonlydir appendonlydir.before-import; fi
mv appendonlydir.importing appendonlydir
mv "$1" dump.rdb`;

const RESTORE = `cd ${DATA_DIR}
if [ -e dump.rdb.before-import ]; then mv -f dump.rdb.before-import dump.rdb; fi
if [ -e appendonlydir.before-import ]; then rm -rf appendonlydir && mv appendonlydir.before-import appendonlydir; fi`;

/** redis-cli in the container, the password in its environment (not on its command line). */
function cli(s: ServiceRecordView, cmd: string[]): KindCommand {
  return { cmd, env: [`REDISCLI_AUTH=${s.password}`] };
}
