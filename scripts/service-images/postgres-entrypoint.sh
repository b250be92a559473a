#!/bin/bash
# berth-test/postgres's entrypoint: the official postgres image's contract, for the local test
# image provision.sh builds from Debian's postgresql-15. An empty data directory ($PGDATA) is
# initialised once: superuser POSTGRES_USER (default postgres) with POSTGRES_PASSWORD (required
# unless POSTGRES_HOST_AUTH_METHOD=trust), a database POSTGRES_DB (default the user's name),
# password (scram-sha-256) logins from other hosts, trusted local ones, the scripts of
# /docker-entrypoint-initdb.d. It starts as root, owns the data directory to postgres (uid 999)
# and runs the server as that user. A data directory already initialised is used as it is.
set -Eeuo pipefail

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }

# `docker run IMAGE -c shared_buffers=256MB` passes server options, as the official image allows.
if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi
# Anything else (psql, bash ...) runs as it is.
if [[ "${1:-}" != postgres ]] || [[ " $* " =~ \ (-V|--version|--help|--describe-config)\  ]]; then exec "$@"; fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-}"

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3775 /var/run/postgresql
  find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
  exec setpriv --reuid=999 --regid=999 --clear-groups env HOME=/var/lib/postgresql "$BASH_SOURCE" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "$POSTGRES_PASSWORD" && "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]]; then
    cat >&2 <<'MSG'
Error: the database is uninitialized and no superuser password is given.
       Set POSTGRES_PASSWORD to a non-empty value (docker run -e POSTGRES_PASSWORD=...),
       or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one (not recommended).
MSG
    exit 1
  fi
  say "initialising $PGDATA for $POSTGRES_USER"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image.
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  # Local connections (the socket, inside the container) stay trusted as initdb made them; other
  # hosts log in with the password, in the server's password_encryption (scram-sha-256).
  auth="${POSTGRES_HOST_AUTH_METHOD:-$(postgres -C password_encryption)}"
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"

  # A server only this script reaches (no TCP) creates the database and runs the init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >/dev/null
  sql() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"; }
  exists="$(sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
  [[ -n "$exists" ]] || sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e "$f" ]] || continue
    case "$f" in
      *.sh) say "running $f"; if [[ -x "$f" ]]; then "$f"; else . "$f"; fi ;;
      *.sql) say "running $f"; sql --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) say "running $f"; gunzip -c "$f" | sql --dbname "$POSTGRES_DB" ;;
      *) say "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  say 'init complete; ready for start up'
fi

exec "$@"
