#!/bin/sh
# berth-test/swarm-node's entrypoint: one Docker engine in a container, a node of the test Swarm
# (test/helpers/swarm-cluster.ts). The container is not --privileged (this machine's capability
# bounding set lacks CAP_SYS_RESOURCE, which --privileged asks for), so what --privileged would
# have given the inner engine is done here: /sys and the cgroup hierarchies writable (the engine
# makes its containers' cgroups there), and / shared, so the mounts of its containers' volumes
# propagate. The API listens on plain TCP: the nodes and the tests talk to it on a private
# bridge network; --tls=false spares the 15 s an engine waits when it listens without TLS.
set -eu

mount -o remount,rw /sys
for dir in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
  mount -o remount,bind,rw "$dir"
done
mount --make-rshared /

exec dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2375 --tls=false "$@"
