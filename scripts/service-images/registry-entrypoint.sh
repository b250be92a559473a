#!/bin/sh
# berth-test/registry's entrypoint: the official registry:2 image's, for the local test image
# provision.sh builds from Debian's docker-registry. A config file alone runs `registry serve` with
# it; a registry subcommand or option runs `registry` with it; anything else runs as given.
# REGISTRY_* variables override the config file's settings (the registry itself reads them).
set -e

case "${1:-}" in
  *.yaml | *.yml) set -- registry serve "$@" ;;
  serve | garbage-collect | help | -*) set -- registry "$@" ;;
esac

exec "$@"
