#!/usr/bin/env bash
# Makes this machine ready to run berth and its tests: a Docker engine that answers, the real
# clients the tests drive (git, ssh, curl, wrk, pebble), and the local base image the test apps
# build FROM. Nothing comes from an image registry: the base image is imported from this
# machine's own busybox, bash and node. Safe to run again; it only does what is missing.
#
#   scripts/provision.sh            engine + test tools + base image
#   scripts/provision.sh --engine   only a Docker engine (what `npm start` needs)
set -euo pipefail

BASE_IMAGE="${BERTH_TEST_BASE_IMAGE:-berth-test/base:latest}"
# The stack image buildpack tests build in (berth serve --stack-image): the same files as the base
# image, with /app empty, HOME=/app, util-linux's setpriv (berth drops to an unprivileged user
# with it) and the stack id in CNB_STACK_ID, as on Heroku's stacks.
STACK_IMAGE="${BERTH_TEST_STACK_IMAGE:-berth-test/stack:latest}"
DOCKER_LOG="${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}"
# Bumped whenever an image's content changes, so machines provisioned earlier rebuild it.
BASE_REVISION=2
STACK_REVISION=3
only_engine=0
[[ "${1:-}" == "--engine" ]] && only_engine=1

say() { printf '=====> %s\n' "$*" >&2; }
die() { printf ' !     %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ "$(id -u)" == 0 ]] || die "$1 is missing and installing it needs root: run this as root, or install it yourself ($2)"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  need_root "${missing[*]}" "apt-get install -y ${missing[*]}"
  say "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_engine() {
  engine_answers && return 0
  command -v dockerd >/dev/null || apt_install docker.io iptables
  command -v docker >/dev/null || apt_install docker.io
  need_root "a running Docker engine" "start dockerd, or point DOCKER_HOST at an engine"
  say "starting dockerd (log: $DOCKER_LOG)"
  setsid nohup dockerd >"$DOCKER_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do engine_answers && return 0; sleep 0.5; done
  tail -n 20 "$DOCKER_LOG" >&2 || true
  die "dockerd did not answer within 30 s; its log is above"
}

build_base_image() {
  image_current "$BASE_IMAGE" "$BASE_REVISION" && return 0
  say "building $BASE_IMAGE from this machine's busybox, bash and node (no registry)"
  import_rootfs "$BASE_IMAGE" "$BASE_REVISION" --change 'WORKDIR /app'
}

build_stack_image() {
  image_current "$STACK_IMAGE" "$STACK_REVISION" && return 0
  command -v setpriv >/dev/null || apt_install util-linux
  say "building $STACK_IMAGE from this machine's busybox, bash, node and setpriv (no registry)"
  import_rootfs "$STACK_IMAGE" "$STACK_REVISION" --change 'ENV HOME=/app' --change 'ENV CNB_STACK_ID=heroku-24' --change 'WORKDIR /'
}

image_current() {
  [[ "$(docker image inspect -f '{{index .Config.Labels "berth.provision"}}' "$1" 2>/dev/null)" == "$2" ]]
}

# import_rootfs IMAGE REVISION [--change ...]: busybox, bash, node (and for the stack image,
# setpriv) with their libraries, imported as IMAGE; the image it replaces is removed when unused.
import_rootfs() {
  local image="$1" revision="$2" root node_bin previous bins
  shift 2
  previous="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  root="$(mktemp -d)"
  trap "rm -rf '$root'; trap - RETURN" RETURN
  node_bin="$(command -v node)"
  mkdir -p "$root"/{bin,usr/bin,etc,tmp,root,app,www,lib64}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  cp "$(command -v bash)" "$root/bin/bash"
  ln -s /bin/busybox "$root/usr/bin/env"  # for #!/usr/bin/env bash, as buildpack scripts start
  cp "$node_bin" "$root/usr/bin/node"
  bins=("$(command -v bash)" "$node_bin")
  if [[ "$image" == "$STACK_IMAGE" ]]; then
    # busybox's setpriv cannot change users; util-linux's can, as on Heroku's stacks.
    rm -f "$root/bin/setpriv"
    cp "$(command -v setpriv)" "$root/usr/bin/setpriv"
    bins+=("$(command -v setpriv)")
  fi
  for bin in "${bins[@]}"; do
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "LABEL berth.provision=$revision" \
    "$@" \
    - "$image" >/dev/null || die "docker import of $image failed"
  if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
}

if ((only_engine)); then
  start_engine
  exit 0
fi
command -v git >/dev/null || apt_install git
command -v ssh >/dev/null || apt_install openssh-client
command -v ssh-keygen >/dev/null || apt_install openssh-client
command -v curl >/dev/null || apt_install curl
command -v busybox >/dev/null || apt_install busybox-static
command -v wrk >/dev/null || apt_install wrk
command -v pebble >/dev/null || apt_install pebble
command -v ssh-audit >/dev/null || apt_install ssh-audit
command -v testssl >/dev/null || apt_install testssl.sh
# promtool checks a scrape of /metrics, and a real prometheus scrapes berth (test/e2e-metrics.test.ts).
command -v promtool >/dev/null || apt_install prometheus
# The dashboard's browser tests drive Debian's chromium through playwright-core (test/helpers/browser.ts).
[[ -x /usr/bin/chromium ]] || apt_install chromium
# ... with a small preloaded library built by the tests (test/helpers/no-netlink.c).
command -v cc >/dev/null || apt_install gcc libc6-dev
start_engine
build_base_image
build_stack_image
