#!/bin/bash
# berth-test/redis's entrypoint: the official redis image's contract, for the local test image
# provision.sh builds from Debian's redis-server. Options alone (`IMAGE --appendonly yes`) or a
# config file run redis-server with them; it starts as root, owns /data to redis (uid 999) and
# runs the server as that user, with files private to it (umask 0077). Protected mode is off as
# in the official image (a container is reached from other containers, its password guards it);
# a config file given decides for itself.
set -Eeuo pipefail

if [[ "${1:-}" == -* || "${1:-}" == *.conf ]]; then set -- redis-server "$@"; fi

if [[ "${1:-}" == redis-server && "$(id -u)" == 0 ]]; then
  find . \! -user redis -exec chown redis:redis '{}' +
  exec setpriv --reuid=999 --regid=999 --clear-groups "$BASH_SOURCE" "$@"
fi

[[ "$(umask)" == 0022 ]] && umask 0077

if [[ "${1:-}" == redis-server && ( -z "${2:-}" || "${2:-}" == -* ) ]]; then
  set -- redis-server --protected-mode no "${@:2}"
fi

exec "$@"
