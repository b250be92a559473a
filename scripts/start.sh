#!/usr/bin/env bash
# Starts berth on this machine with embedded defaults: data in ./.berth, unprivileged ports,
# apps at http://APP.localhost:8080, git push to ssh://berth@localhost:2222/APP.
# Any BERTH_* variable set in the environment overrides the default below.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
scripts/provision.sh --engine
[[ -d node_modules ]] || npm ci
node build.mjs
export BERTH_DATA_DIR="${BERTH_DATA_DIR:-$PWD/.berth}"
export BERTH_HTTP_PORT="${BERTH_HTTP_PORT:-8080}"
export BERTH_HTTPS_PORT="${BERTH_HTTPS_PORT:-8443}"
export BERTH_SSH_PORT="${BERTH_SSH_PORT:-2222}"
export BERTH_DOMAIN="${BERTH_DOMAIN:-localhost}"
exec dist/berth serve
