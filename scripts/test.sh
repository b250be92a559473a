#!/usr/bin/env bash
# The whole test suite, from a fresh machine: provision what is missing (Docker engine, git,
# ssh, curl, pebble, the local base and service images), type-check, build the single executable, then run
# the unit tests and the end-to-end tests against dist/berth.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
scripts/provision.sh
echo "-----> type-check"
tsc --noEmit -p .
tsc --noEmit -p src/dashboard/page
echo "-----> build"
node build.mjs
echo "-----> tests"
# Tests leave nothing behind, also when they fail: the run gets a temp dir of its own (every test,
# helper and child process it starts writes there through TMPDIR), and anything left in it
# afterwards fails the run, listed by name.
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-run-XXXXXX")"
trap 'rm -rf "$run_tmp"' EXIT
status=0
# A test that hangs fails after 10 minutes instead of holding the run until CI's limit.
run_tests() {
  TMPDIR="$run_tmp" node --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec "$@"
}
if [ "$#" -gt 0 ]; then
  run_tests "$@" || status=$?
else
  # The unit tests that touch no Docker engine, daemon or browser (about 1.5 minutes of light work
  # in all) run beside the others, which run one file at a time: they share the machine with
  # end-to-end tests that assert no request stalls. Their report follows the others'.
  mapfile -t quiet < <(grep -L -E 'startDaemon|dist/berth|docker|Docker|chromium|browser' test/*.test.ts)
  mapfile -t others < <(printf '%s\n' test/*.test.ts | grep -vxF -f <(printf '%s\n' "${quiet[@]}"))
  quiet_log="$(mktemp "${TMPDIR:-/tmp}/berth-test-quiet-XXXXXX")"
  trap 'rm -rf "$run_tmp" "$quiet_log"' EXIT
  run_tests "${quiet[@]}" >"$quiet_log" 2>&1 &
  quiet_pid=$!
  run_tests "${others[@]}" || status=$?
  quiet_status=0
  wait "$quiet_pid" || quiet_status=$?
  echo "-----> the ${#quiet[@]} unit test files run alongside"
  cat "$quiet_log"
  [ "$quiet_status" -eq 0 ] || status=$quiet_status
fi
left="$(find "$run_tmp" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)"
if [ -n "$left" ]; then
  echo " !     the tests left $(printf '%s\n' "$left" | wc -l) entries in the temp dir ($(du -sh "$run_tmp" | cut -f1)); each test must remove what it makes:" >&2
  printf '%s\n' "$left" | sed 's/^/       /' >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
