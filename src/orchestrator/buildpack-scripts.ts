// The scripts berth puts into buildpack containers and images, run inside containers made from
// the stack image, never on the server: the build runner (as root: prepare, drop to the build
// user, run the buildpacks as Heroku does, move the build to /app), and the runtime's /start
// TYPE and /exec COMMAND, as herokuish images have them.

/** Exit codes of the runner that the builder turns into messages. */
export const RUNNER_EXIT = {
  /** The stack image's user is not in its /etc/passwd. */
  unknownUser: 3,
  /** The stack image has no way to change users (util-linux's setpriv, or su). */
  noSetpriv: 4,
  noneDetected: 10,
  /** + index of the buildpack (0-based) */
  notCompatible: 20,
  compileFailed: 40,
  releaseFailed: 60,
} as const;

/** The user builds and processes run as when the stack image's user is root (herokuish's). */
export const DEFAULT_BUILD_UID = 32767;

/**
 * /berth/build MODE IMAGE_USER, as root. MODE `detect`: the first buildpack in /tmp/buildpacks
 * whose bin/detect accepts the app is used. MODE `all`: every buildpack, in order, each detected
 * against the build dir as the previous one left it. The environment (STACK, SOURCE_VERSION,
 * REQUEST_ID, curl timeouts) comes from the container. What the builder reads back is left in
 * /berth/out: the build user (uid:gid), the last bin/release output, the built app's Procfile
 * and app.json, and /etc/passwd and /etc/group (which name the build user).
 */
export const RUNNER = `#!/usr/bin/env bash
set -o pipefail
mode="$1" image_user="$2"
build_dir=/tmp/build cache_dir=/tmp/cache env_dir=/tmp/env out=/berth/out
user="\${image_user%%:*}"
if [[ -z $user || $user == root || $user == 0 ]]; then
  uid="\${CNB_USER_ID:-${DEFAULT_BUILD_UID}}" gid="\${CNB_GROUP_ID:-\${CNB_USER_ID:-${DEFAULT_BUILD_UID}}}"
elif [[ $user =~ ^[0-9]+$ ]]; then
  uid="$user" gid="$(id -g "$user" 2>/dev/null || echo "$user")"
else
  uid="$(id -u "$user" 2>/dev/null)" && gid="$(id -g "$user")" || { echo " !     the stack image's user $user is not in its /etc/passwd"; exit 3; }
fi
if [[ $image_user == *:* && \${image_user#*:} =~ ^[0-9]+$ ]]; then gid="\${image_user#*:}"; fi
# The build user gets a name, as herokuish's does: some tools look their user up.
grep -q "^[^:]*:[^:]*:$gid:" /etc/group || echo "berth:x:$gid:" >> /etc/group
grep -q "^[^:]*:[^:]*:$uid:" /etc/passwd || echo "berth:x:$uid:$gid:berth:/app:/bin/bash" >> /etc/passwd
mkdir -p /app "$cache_dir" "$env_dir" "$out"
chown -R "$uid:$gid" /app "$build_dir" "$env_dir" /tmp/buildpacks "$out"
# Caches of earlier builds are the build user's already; a new volume (or an older one) is not.
[[ $(stat -c %u:%g "$cache_dir") == "$uid:$gid" ]] || chown -R "$uid:$gid" "$cache_dir"
# util-linux's setpriv (Heroku's stacks have it), else su with the environment kept.
if setpriv --help 2>&1 | grep -q -- --reuid; then
  setpriv --reuid="$uid" --regid="$gid" --clear-groups bash /berth/steps "$mode" || exit $?
elif command -v su >/dev/null; then
  name="$(awk -F: -v u="$uid" '$3 == u { print $1; exit }' /etc/passwd)"
  su -p -s /bin/bash "$name" -c "bash /berth/steps $mode" || exit $?
else
  echo " !     the stack image has neither setpriv (util-linux's) nor su: berth runs buildpacks as an unprivileged user with one of them"
  exit 4
fi
rm -rf /app && mv "$build_dir" /app || exit 1
echo "$uid:$gid" > "$out/user"
for f in Procfile app.json; do if [[ -f /app/$f ]]; then cp "/app/$f" "$out/$f"; fi; done
cp /etc/passwd /etc/group "$out/"
exit 0
`;

/** /berth/steps MODE, as the build user with HOME=/app: detect, compile, export, release. */
export const STEPS = `#!/usr/bin/env bash
set -o pipefail
shopt -s nullglob
mode="$1"
build_dir=/tmp/build cache_dir=/tmp/cache env_dir=/tmp/env out=/berth/out
export HOME=/app
buildpacks=(/tmp/buildpacks/*)

name_of() { printf '%s' "\${1##*/[0-9][0-9]-}"; }

detect() {
  local said
  said=$(cd "$build_dir" && "$1/bin/detect" "$build_dir") || return 1
  said="\${said%%$'\\n'*}"
  printf '%s' "\${said:-$(name_of "$1")}"
}

# compile INDEX NAME: the buildpack's compile, then its export for the ones after it, then its release.
compile() {
  local bp="\${buildpacks[$1]}"
  echo "-----> $2 app detected"
  (cd "$build_dir" && "$bp/bin/compile" "$build_dir" "$cache_dir" "$env_dir") || exit $((40 + $1))
  if [[ -f $bp/export ]]; then source "$bp/export"; fi
  if [[ -f $bp/bin/release ]]; then
    (cd "$build_dir" && "$bp/bin/release" "$build_dir") > "$out/release.yml.tmp" || exit $((60 + $1))
    mv "$out/release.yml.tmp" "$out/release.yml"
  fi
}

if [[ $mode == detect ]]; then
  for i in "\${!buildpacks[@]}"; do
    if name=$(detect "\${buildpacks[$i]}"); then compile "$i" "$name"; exit 0; fi
    echo "       $(name_of "\${buildpacks[$i]}"): not detected"
  done
  exit 10
fi
for i in "\${!buildpacks[@]}"; do
  if ! name=$(detect "\${buildpacks[$i]}"); then
    echo " !     App not compatible with buildpack: $(name_of "\${buildpacks[$i]}")"
    exit $((20 + i))
  fi
  compile "$i" "$name"
done
exit 0
`;

/**
 * /exec [COMMAND...]: a command in the app's environment, as on Heroku: HOME is /app, the
 * stack's /etc/profile.d, the app's `.profile.d/*.sh` and `.profile` are sourced, then the
 * command runs in bash (one argument) or as given (several); with none, an interactive bash.
 */
export const EXEC = `#!/usr/bin/env bash
export HOME=/app
cd /app || exit 1
shopt -s nullglob
for f in /etc/profile.d/*.sh /app/.profile.d/*.sh; do . "$f"; done
shopt -u nullglob
if [[ -s /app/.profile ]]; then . /app/.profile; fi
hash -r
if (($# == 0)); then exec bash; fi
if (($# == 1)); then exec bash -c "$1"; fi
exec "$@"
`;

/** /start TYPE: the process type's command (from /berth/process-types) through /exec. */
export const START = `#!/usr/bin/env bash
type="\${1:-web}"
while IFS= read -r line || [[ -n $line ]]; do
  if [[ \${line%%:*} == "$type" ]]; then exec /exec "\${line#*: }"; fi
done < /berth/process-types
echo "Proc entrypoint $type does not exist. Please check your Procfile" >&2
exit 1
`;

/** The process types as /start reads them: `type: command`, one a line. */
export function processTypesFile(types: Record<string, string>): string {
  return Object.entries(types)
    .map(([type, command]) => `${type}: ${command.replace(/[\r\n]+/g, ' ')}\n`)
    .join('');
}

/** The launcher of images built before /start and /exec: its Entrypoint took the command. */
const OLD_LAUNCHER = '/berth/launch';

/**
 * The Cmd a process of a buildpack image starts with: `/start TYPE`, or, for an image an older
 * berth built (its entrypoint takes the command), the command itself.
 */
export function buildpackProcessCmd(imageEntrypoint: readonly string[], type: string, command: string): string[] {
  return imageEntrypoint[0] === OLD_LAUNCHER ? [command] : ['/start', type];
}

/** The Cmd of a one-off in a buildpack image: `/exec COMMAND` (an interactive bash without one). */
export function buildpackExecCmd(imageEntrypoint: readonly string[], command: string): string[] {
  if (imageEntrypoint[0] === OLD_LAUNCHER) return command ? [command] : [];
  return command ? ['/exec', command] : ['/exec'];
}
