#!/usr/bin/env bash
# Makes this machine ready to run berth and its tests: a Docker engine that answers, the real
# clients the tests drive (git, ssh, curl, wrk, pebble), the local base image the test apps
# build FROM, the Postgres and Redis images the services tests run, and the Swarm tests' node and
# registry images. Nothing comes from an image registry: the base image is imported from this
# machine's own busybox, bash and node, the service images are built from Debian's postgresql-15
# and redis-server, the Swarm node from this machine's own dockerd, containerd and runc, the
# registry from Debian's docker-registry. Safe to run again; it only does what is missing.
#
#   scripts/provision.sh            engine + test tools + base image
#   scripts/provision.sh --engine   only a Docker engine (what `npm start` needs)
set -euo pipefail

BASE_IMAGE="${BERTH_TEST_BASE_IMAGE:-berth-test/base:latest}"
# The stack image buildpack tests build in (berth serve --stack-image): the same files as the base
# image, with /app empty, HOME=/app, util-linux's setpriv (berth drops to an unprivileged user
# with it) and the stack id in CNB_STACK_ID, as on Heroku's stacks.
STACK_IMAGE="${BERTH_TEST_STACK_IMAGE:-berth-test/stack:latest}"
# The service images `berth serve --postgres-image/--redis-image` gets in tests: Debian's packages
# behind entrypoints that honour the official images' contract (scripts/service-images/).
POSTGRES_IMAGE="${BERTH_TEST_POSTGRES_IMAGE:-berth-test/postgres:15}"
REDIS_IMAGE="${BERTH_TEST_REDIS_IMAGE:-berth-test/redis:7}"
# The node of the test Swarm (test/helpers/swarm-cluster.ts): a Docker engine in a container, made
# from this machine's own engine binaries.
SWARM_NODE_IMAGE="${BERTH_TEST_SWARM_NODE_IMAGE:-berth-test/swarm-node:latest}"
# The image registry the Swarm tests run as the cluster's registry (`berth serve --registry-image`):
# Debian's docker-registry behind the official registry:2 image's contract.
REGISTRY_IMAGE="${BERTH_TEST_REGISTRY_IMAGE:-berth-test/registry:2}"
DOCKER_LOG="${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}"
# Bumped whenever an image's content changes, so machines provisioned earlier rebuild it.
BASE_REVISION=2
STACK_REVISION=3
POSTGRES_REVISION=3
REDIS_REVISION=1
SWARM_NODE_REVISION=1
REGISTRY_REVISION=1
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

build_postgres_image() {
  image_current "$POSTGRES_IMAGE" "$POSTGRES_REVISION" && return 0
  [[ -x /usr/lib/postgresql/15/bin/postgres ]] || apt_install postgresql-15
  command -v setpriv >/dev/null || apt_install util-linux
  say "building $POSTGRES_IMAGE from Debian's postgresql-15 (no registry)"
  local root pg=/usr/lib/postgresql/15 bins=() bin
  root="$(new_rootfs)"
  trap "rm -rf '$root'; trap - RETURN" RETURN
  mkdir -p "$root$pg/bin" "$root/usr/share/postgresql" "$root/usr/lib/locale" "$root/usr/share" \
    "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/docker-entrypoint-initdb.d"
  for bin in postgres initdb pg_ctl psql pg_dump pg_dumpall pg_restore pg_isready pg_controldata; do
    cp "$pg/bin/$bin" "$root$pg/bin/$bin"
    bins+=("$pg/bin/$bin")
  done
  # The server's modules (plpgsql, encodings, contrib) but not the JIT, which would bring LLVM.
  mkdir -p "$root$pg/lib"
  for lib in "$pg"/lib/*.so; do
    [[ "$(basename "$lib")" == llvmjit* ]] && continue
    cp "$lib" "$root$pg/lib/"
    bins+=("$lib")
  done
  cp -r /usr/share/postgresql/15 "$root/usr/share/postgresql/15"
  # Listening on every address of the container, as the official image's sample config says.
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$root/usr/share/postgresql/15/postgresql.conf.sample"
  grep -qF "listen_addresses = '*'" "$root/usr/share/postgresql/15/postgresql.conf.sample" || die "postgresql.conf.sample has no listen_addresses line to set"
  cp -r /usr/share/zoneinfo "$root/usr/share/zoneinfo"
  cp -r /usr/lib/locale/C.utf8 "$root/usr/lib/locale/C.utf8"
  copy_libraries "$root" "${bins[@]}"
  # psql pages long results through `pager`, which Debian's images have (more).
  printf '#!/bin/sh\nexec more "$@"\n' > "$root/usr/bin/pager"
  chmod 755 "$root/usr/bin/pager"
  add_service_user "$root" postgres /var/lib/postgresql
  install -m 0755 "$(dirname "$0")/service-images/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  build_rootfs_image "$root" "$POSTGRES_IMAGE" "$POSTGRES_REVISION" <<DOCKERFILE
ENV PATH=/usr/local/bin:/usr/bin:/bin:$pg/bin PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
DOCKERFILE
}

build_redis_image() {
  image_current "$REDIS_IMAGE" "$REDIS_REVISION" && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  command -v setpriv >/dev/null || apt_install util-linux
  say "building $REDIS_IMAGE from Debian's redis-server (no registry)"
  local root server
  root="$(new_rootfs)"
  trap "rm -rf '$root'; trap - RETURN" RETURN
  mkdir -p "$root/data"
  # redis-server is the same program as redis-check-rdb, told apart by the name it is run by.
  server="$(readlink -f "$(command -v redis-server)")"
  cp "$server" "$root/usr/bin/$(basename "$server")"
  [[ "$(basename "$server")" == redis-server ]] || ln -s "$(basename "$server")" "$root/usr/bin/redis-server"
  cp "$(command -v redis-cli)" "$root/usr/bin/redis-cli"
  copy_libraries "$root" "$server" "$(command -v redis-cli)"
  add_service_user "$root" redis /data
  install -m 0755 "$(dirname "$0")/service-images/redis-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  build_rootfs_image "$root" "$REDIS_IMAGE" "$REDIS_REVISION" <<DOCKERFILE
ENV PATH=/usr/local/bin:/usr/bin:/bin
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
DOCKERFILE
}

build_swarm_node_image() {
  image_current "$SWARM_NODE_IMAGE" "$SWARM_NODE_REVISION" && return 0
  command -v xtables-nft-multi >/dev/null || apt_install iptables
  command -v ip >/dev/null || apt_install iproute2
  local bin
  for bin in dockerd containerd containerd-shim-runc-v2 runc docker-init docker-proxy; do
    command -v "$bin" >/dev/null || apt_install docker.io
  done
  command -v docker >/dev/null || apt_install docker.io
  say "building $SWARM_NODE_IMAGE from this machine's dockerd, containerd, runc and iptables (no registry)"
  local root previous xtables=/usr/lib/x86_64-linux-gnu/xtables bins=() path
  previous="$(docker image inspect -f '{{.Id}}' "$SWARM_NODE_IMAGE" 2>/dev/null || true)"
  root="$(new_rootfs)"
  trap "rm -rf '$root'; trap - RETURN" RETURN
  mkdir -p "$root/usr/sbin" "$root/var/lib/docker" "$root/run" "$root/etc/docker"
  ln -s ../run "$root/var/run"
  for bin in dockerd containerd containerd-shim-runc-v2 runc docker-init docker-proxy docker ip xtables-nft-multi; do
    path="$(readlink -f "$(command -v "$bin")")"
    cp "$path" "$root/usr/bin/$bin"
    ldd "$path" >/dev/null 2>&1 && bins+=("$path")  # docker-init and the docker CLI are static
  done
  # The engine runs iptables by these names; the nft flavour, as on this machine.
  for bin in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$root/usr/bin/$bin"
  done
  # iptables loads its matches and targets from here at run time, so ldd does not list them.
  mkdir -p "$root$xtables"
  cp "$xtables"/*.so "$root$xtables/"
  bins+=("$xtables"/*.so)
  copy_libraries "$root" "${bins[@]}"
  printf 'ID=berth-swarm-node\nNAME="berth test Swarm node"\nVERSION_ID=%s\n' "$SWARM_NODE_REVISION" > "$root/etc/os-release"
  install -m 0755 "$(dirname "$0")/service-images/swarm-node-entrypoint.sh" "$root/usr/local/bin/swarm-node-entrypoint.sh"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'VOLUME /var/lib/docker' \
    --change 'EXPOSE 2375 2377 7946 4789/udp' \
    --change 'ENTRYPOINT ["swarm-node-entrypoint.sh"]' \
    --change "LABEL berth.provision=$SWARM_NODE_REVISION" \
    - "$SWARM_NODE_IMAGE" >/dev/null || die "docker import of $SWARM_NODE_IMAGE failed"
  if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$SWARM_NODE_IMAGE")" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
}

build_registry_image() {
  image_current "$REGISTRY_IMAGE" "$REGISTRY_REVISION" && return 0
  [[ -x /usr/bin/docker-registry ]] || apt_install docker-registry
  say "building $REGISTRY_IMAGE from Debian's docker-registry (no registry)"
  local root
  root="$(new_rootfs)"
  trap "rm -rf '$root'; trap - RETURN" RETURN
  mkdir -p "$root/etc/docker/registry" "$root/var/lib/registry"
  cp /usr/bin/docker-registry "$root/bin/registry"
  copy_libraries "$root" /usr/bin/docker-registry
  # Certificates for a pull-through cache of an HTTPS registry, when this machine has them.
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  # The official image's configuration: storage in /var/lib/registry, :5000, no auth, no delete.
  cat > "$root/etc/docker/registry/config.yml" <<'CONFIG'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
CONFIG
  install -m 0755 "$(dirname "$0")/service-images/registry-entrypoint.sh" "$root/entrypoint.sh"
  build_rootfs_image "$root" "$REGISTRY_IMAGE" "$REGISTRY_REVISION" <<'DOCKERFILE'
ENV PATH=/usr/local/bin:/usr/bin:/bin
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/entrypoint.sh"]
CMD ["/etc/docker/registry/config.yml"]
DOCKERFILE
}

# new_rootfs: a temp dir with busybox, bash and util-linux's setpriv (an entrypoint drops from
# root to its service's user with it) and their libraries; its path on stdout.
new_rootfs() {
  local root
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc,tmp,root,lib64}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  cp "$(command -v bash)" "$root/bin/bash"
  rm -f "$root/bin/setpriv"
  cp "$(command -v setpriv)" "$root/usr/bin/setpriv"
  ln -s /bin/busybox "$root/usr/bin/env"
  copy_libraries "$root" "$(command -v bash)" "$(command -v setpriv)"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  printf '%s\n' "$root"
}

# copy_libraries ROOT FILE...: the shared libraries `ldd` lists for each FILE, into ROOT.
copy_libraries() {
  local root="$1" file lib
  shift
  for file in "$@"; do
    for lib in $(ldd "$file" | grep -o '/[^ ]*'); do
      [[ -e "$root$lib" ]] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

# add_service_user ROOT NAME HOME: the user (and group) 999 a service runs as, as in the official images.
add_service_user() {
  printf '%s:x:999:999:%s:%s:/bin/bash\n' "$2" "$2" "$3" >> "$1/etc/passwd"
  printf '%s:x:999:\n' "$2" >> "$1/etc/group"
}

# build_rootfs_image ROOT IMAGE REVISION < INSTRUCTIONS: ROOT as an image's only layer, with the
# Dockerfile instructions read from stdin (docker import cannot set STOPSIGNAL); the image it
# replaces is removed when unused.
build_rootfs_image() {
  local root="$1" image="$2" revision="$3" context previous
  previous="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  context="$(mktemp -d)"
  trap "rm -rf '$context'; trap - RETURN" RETURN
  mv "$root" "$context/rootfs"
  { printf 'FROM scratch\nCOPY rootfs/ /\nLABEL berth.provision=%s\n' "$revision"; cat; } > "$context/Dockerfile"
  # The classic builder needs nothing beyond the engine (BuildKit may be absent); its notice that
  # it is deprecated is shown only when the build fails.
  local output
  if ! output="$(tar -C "$context" -c . | DOCKER_BUILDKIT=0 docker build -q -t "$image" - 2>&1 >/dev/null)"; then
    printf '%s\n' "$output" >&2
    die "docker build of $image failed"
  fi
  if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
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
# test/docker-ssh.test.ts reaches this machine's engine over ssh:// through its own sshd.
[[ -x /usr/sbin/sshd ]] || apt_install openssh-server
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
build_postgres_image
build_redis_image
build_swarm_node_image
build_registry_image
