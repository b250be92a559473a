#!/usr/bin/env bash
# The whole test suite, from a fresh machine: provision what is missing (Docker engine, git,
# ssh, curl, pebble, the local base image), type-check, build the single executable, then run
# the unit tests and the end-to-end tests against dist/berth.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
scripts/provision.sh
echo "-----> type-check"
tsc --noEmit -p .
echo "-----> build"
node build.mjs
echo "-----> tests"
node --test --test-concurrency=1 --test-reporter=spec "${@:-test/*.test.ts}"
