# shellcheck shell=bash
# k8s-ha shared shell library, prepended to every step. Functions only; nothing runs here.
# Contract: files are staged first, installed only when content/mode/owner differ, and services
# are restarted or reloaded only when one of their files changed, so a re-run changes nothing.

K8SHA_CHANGED=()
K8SHA_STEP=${K8SHA_STEP:-unknown}
K8SHA_STAGE=

k8sha_log() { printf '[k8s-ha %s] %s\n' "$K8SHA_STEP" "$*" >&2; }

# Record something this run did that is not a file (a join, a drain, a restore) so that the
# step's summary does not claim "no changes".
k8sha_note() {
  K8SHA_CHANGED+=("($1)")
  k8sha_log "$1"
}

k8sha_fail() {
  printf '[k8s-ha %s] ERROR: %s\n' "$K8SHA_STEP" "$*" >&2
  exit 1
}

k8sha_begin() {
  K8SHA_STEP=$1
  umask 022
  K8SHA_STAGE=$(mktemp -d "${TMPDIR:-/tmp}/k8s-ha-stage.XXXXXX")
  chmod 700 "$K8SHA_STAGE"
  trap 'rm -rf -- "$K8SHA_STAGE"' EXIT
}

# k8sha_stage PATH MODE OWNER, with the file's base64 content on stdin.
k8sha_stage() {
  local dest=$K8SHA_STAGE/files$1
  mkdir -p -- "$(dirname -- "$dest")"
  base64 -d >"$dest"
  printf '%s %s %s\n' "$1" "$2" "$3" >>"$K8SHA_STAGE/manifest"
}

# Install every staged file whose content, mode or owner differs from what is on disk.
k8sha_install_files() {
  local path mode owner src
  [ -f "$K8SHA_STAGE/manifest" ] || return 0
  while read -r path mode owner; do
    src=$K8SHA_STAGE/files$path
    if [ -f "$path" ] && cmp -s -- "$src" "$path" &&
      [ "$(stat -c '%a %U:%G' -- "$path")" = "${mode#0} $owner" ]; then
      continue
    fi
    mkdir -p -- "$(dirname -- "$path")"
    install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" -- "$src" "$path.k8sha-new"
    mv -f -- "$path.k8sha-new" "$path"
    K8SHA_CHANGED+=("$path")
    k8sha_log "updated $path"
  done <"$K8SHA_STAGE/manifest"
  if k8sha_changed '/etc/systemd/system/*'; then
    systemctl daemon-reload
  fi
}

# Remove every file this step installs (a delete's undo of k8sha_install_files).
k8sha_remove_files() {
  local path _mode _owner
  [ -f "$K8SHA_STAGE/manifest" ] || return 0
  while read -r path _mode _owner; do
    if [ -e "$path" ]; then
      rm -f -- "$path"
      k8sha_log "removed $path"
    fi
  done <"$K8SHA_STAGE/manifest"
}

# True when any file installed by this run matches one of the glob patterns.
k8sha_changed() {
  local file pattern
  for file in "${K8SHA_CHANGED[@]}"; do
    for pattern in "$@"; do
      # shellcheck disable=SC2053 # the pattern is a glob on purpose
      [[ $file == $pattern ]] && return 0
    done
  done
  return 1
}

k8sha_missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed ||
      printf '%s\n' "$pkg"
  done
}

# k8sha_fetch URL SHA256 DEST WHAT: DEST with exactly that sha256, downloaded only when it is not
# already there; a download that does not match is deleted and refused, naming WHAT and the URL.
k8sha_fetch() {
  local url=$1 want=$2 dest=$3 what=$4 got
  if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$want" ]; then
    return 0
  fi
  mkdir -p -- "$(dirname -- "$dest")"
  k8sha_log "downloading $what from $url"
  curl -fsSL --retry 3 --connect-timeout 15 -o "$dest.part" "$url" ||
    { rm -f -- "$dest.part"; k8sha_fail "cannot download $what from $url (check the files mirror, artifacts.filesRepo)"; }
  got=$(sha256sum "$dest.part" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f -- "$dest.part"
    k8sha_fail "checksum mismatch for $what from $url: expected $want, got $got (refused, nothing installed)"
  fi
  mv -f -- "$dest.part" "$dest"
}

# Install Debian packages only when missing: a host that has them never touches the network.
k8sha_apt_install() {
  local missing
  mapfile -t missing < <(k8sha_missing_packages "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  k8sha_log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || k8sha_fail "apt-get update failed: check mirrors.osPackages and the host's route out"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    k8sha_fail "could not install ${missing[*]}"
}

# k8sha_service UNIT ACTION PATTERN...: enable UNIT, start it when stopped, otherwise ACTION
# (restart or reload) it when a file matching one of the patterns changed in this run.
k8sha_service() {
  local unit=$1 action=$2
  shift 2
  systemctl enable "$unit" >/dev/null 2>&1 || k8sha_fail "cannot enable $unit"
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit" || k8sha_fail "$unit failed to start (journalctl -u $unit)"
    k8sha_log "started $unit"
  elif [ "$#" -gt 0 ] && k8sha_changed "$@"; then
    systemctl "$action" "$unit" || k8sha_fail "$unit failed to $action (journalctl -u $unit)"
    k8sha_log "${action}ed $unit"
  fi
}

# k8sha_renice UNIT COMM: give UNIT's running processes named COMM the Nice= its unit sets now, so
# a changed priority applies without a restart (which, for keepalived, would move the VIP).
k8sha_renice() {
  local nice pid pids=()
  nice=$(systemctl show -p Nice --value "$1")
  for pid in /proc/[0-9]*; do
    [ "$(cat "$pid/comm" 2>/dev/null)" = "$2" ] && pids+=("${pid#/proc/}")
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    renice -n "$nice" -p "${pids[@]}" >/dev/null || k8sha_fail "cannot renice $2 to $nice"
    k8sha_log "$2 now runs at nice $nice"
  fi
}

# k8sha_wait SECONDS WHAT COMMAND...: retry COMMAND every 0.5 s until it succeeds.
# k8sha_wait SECONDS WHAT COMMAND...: until COMMAND succeeds, at most SECONDS times
# K8SHA_WAIT_SCALE (kubernetes.waitScale, for slow hosts; default 1).
k8sha_wait() {
  local seconds=$(($1 * ${K8SHA_WAIT_SCALE:-1})) what=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      k8sha_fail "timed out after ${seconds}s waiting for $what"
    fi
    sleep 0.5
  done
}

k8sha_done() {
  if [ "${#K8SHA_CHANGED[@]}" -eq 0 ]; then
    printf 'k8s-ha %s: no changes\n' "$K8SHA_STEP"
  else
    printf 'k8s-ha %s: %d file(s) changed\n' "$K8SHA_STEP" "${#K8SHA_CHANGED[@]}"
  fi
}
