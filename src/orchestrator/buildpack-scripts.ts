// The two scripts berth puts into buildpack images: the runner that drives the Heroku buildpack
// API inside the build container, and the launcher every process of a buildpack image starts
// through. They run inside containers made from the stack image, never on the server.

/** Exit codes of the runner that the builder turns into messages. */
export const RUNNER_EXIT = {
  noneDetected: 10,
  /** + index of the buildpack (0-based) */
  notCompatible: 20,
  compileFailed: 40,
  releaseFailed: 60,
} as const;

/**
 * /berth/build MODE STACK SOURCE_VERSION RUN_USER
 * MODE `detect`: the first buildpack in /tmp/buildpacks whose bin/detect accepts the app is used.
 * MODE `all`: every buildpack is used, in order; each must accept the app.
 */
export const RUNNER = `#!/usr/bin/env bash
set -o pipefail
shopt -s nullglob
mode="$1"
export STACK="$2" SOURCE_VERSION="$3" HOME=/app
run_user="$4"
build_dir=/tmp/build cache_dir=/tmp/cache env_dir=/tmp/env
mkdir -p "$cache_dir" "$env_dir" /berth/release
buildpacks=(/tmp/buildpacks/*)
selected=()
names=()

name_of() { printf '%s' "\${1##*/[0-9][0-9]-}"; }

detect() {
  local out
  out=$("$1/bin/detect" "$build_dir") || return 1
  out="\${out%%$'\\n'*}"
  printf '%s' "\${out:-$(name_of "$1")}"
}

if [[ $mode == detect ]]; then
  for bp in "\${buildpacks[@]}"; do
    if name=$(detect "$bp"); then selected=("$bp"); names=("$name"); break; fi
    echo "       $(name_of "$bp"): not detected"
  done
  ((\${#selected[@]})) || exit 10
else
  i=0
  for bp in "\${buildpacks[@]}"; do
    if ! name=$(detect "$bp"); then
      echo " !     App not compatible with buildpack: $(name_of "$bp")"
      exit $((20 + i))
    fi
    selected+=("$bp"); names+=("$name"); i=$((i + 1))
  done
fi

i=0
for bp in "\${selected[@]}"; do
  index="\${bp##*/}"; index="\${index%%-*}"
  echo "-----> \${names[$i]} app detected"
  "$bp/bin/compile" "$build_dir" "$cache_dir" "$env_dir" || exit $((40 + 10#$index))
  if [[ -f $bp/export ]]; then source "$bp/export"; fi
  if [[ -f $bp/bin/release ]]; then
    "$bp/bin/release" "$build_dir" > "/berth/release/$index.yml" || exit $((60 + 10#$index))
  fi
  i=$((i + 1))
done

rm -rf /app && mv "$build_dir" /app || exit 1
rm -rf /tmp/env /tmp/buildpacks
if [[ -n $run_user && $run_user != root && $run_user != 0 ]]; then chown -R "$run_user" /app; fi
exit 0
`;

/**
 * /berth/launch [COMMAND]: how every process of a buildpack image starts, as on Heroku: HOME is
 * /app, `.profile.d/*.sh` and `.profile` are sourced, then the command runs in bash (one
 * argument) or as given (several); with none, an interactive bash.
 */
export const LAUNCHER = `#!/usr/bin/env bash
export HOME=/app
cd /app || exit 1
shopt -s nullglob
for f in /app/.profile.d/*.sh; do . "$f"; done
shopt -u nullglob
if [[ -f /app/.profile ]]; then . /app/.profile; fi
if (($# == 0)); then exec bash; fi
if (($# == 1)); then exec bash -c "$1"; fi
exec "$@"
`;
