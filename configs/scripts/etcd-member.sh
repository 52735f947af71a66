#!/usr/bin/env bash
# etcd member: install etcd, install its files, decide whether it bootstraps a new cluster or joins
# the running one, start it, and enable the backup timer. Safe to re-run: a second run changes
# nothing and restarts nothing. See docs/etcd.md.
# Env: K8SHA_ETCD_NAME K8SHA_ETCD_CLIENT_URL K8SHA_ETCD_PEER_URL K8SHA_ETCD_DATA_DIR
#      K8SHA_ETCD_STATE_FILE K8SHA_ETCD_BACKUP_DIR K8SHA_ETCD_SOURCE K8SHA_ETCD_VERSION K8SHA_ETCD_URL
#      K8SHA_ETCD_SHA256 K8SHA_ETCD_ENDPOINTS K8SHA_ETCD_NAMES K8SHA_ETCD_BIN_DIR K8SHA_ETCD_PKI
set -euo pipefail

# The etcd_* helpers come from etcd-lib.sh (Step.libs).

NAME=$K8SHA_ETCD_NAME
DATA_DIR=$K8SHA_ETCD_DATA_DIR
STATE_FILE=$K8SHA_ETCD_STATE_FILE
JOIN_TIMEOUT=${K8SHA_ETCD_JOIN_TIMEOUT:-180}
ENV_FILE=/etc/etcd/etcd.env
# What the running member reads: a change to any of these restarts it (one member at a time).
RESTART_ON=("$ENV_FILE" /etc/systemd/system/etcd.service "$STATE_FILE" "$K8SHA_ETCD_BIN_DIR/etcd"
  "$K8SHA_ETCD_PKI/ca.crt" "$K8SHA_ETCD_PKI/server.*" "$K8SHA_ETCD_PKI/peer.*")

# etcd.env without comments and without the bootstrap-only settings, which a member with data
# never reads again: adding a member to the plan changes ETCD_INITIAL_CLUSTER on every member,
# and that alone must not restart the running ones.
etcd_runtime_settings() {
  grep -v -e '^#' -e '^ETCD_INITIAL_CLUSTER=' -e '^ETCD_INITIAL_CLUSTER_TOKEN=' "$ENV_FILE" 2>/dev/null || true
}


etcd_version_of() { "$1" --version 2>/dev/null | awk '/^etcd Version:/ { print $3 }'; }

# A release tarball, checked against its sha256, into /usr/local/bin; nothing when the installed
# binary already has the wanted version.
etcd_install_tarball() {
  local want=$K8SHA_ETCD_VERSION dir=$K8SHA_STAGE/etcd-release got bin
  if [ "$(etcd_version_of "$K8SHA_ETCD_BIN_DIR/etcd")" = "$want" ] && [ -x "$ETCDCTL" ]; then
    return 0
  fi
  [ -n "$K8SHA_ETCD_SHA256" ] || k8sha_fail "etcd.source.sha256 is empty: refusing an unchecked download"
  mkdir -p "$dir"
  k8sha_fetch "$K8SHA_ETCD_URL" "$K8SHA_ETCD_SHA256" "$dir/etcd.tar.gz" "etcd $want"
  tar -xzf "$dir/etcd.tar.gz" -C "$dir" --strip-components=1 --no-same-owner ||
    k8sha_fail "$K8SHA_ETCD_URL is not a readable tar.gz"
  if [ ! -x "$dir/etcd" ] || [ ! -x "$dir/etcdctl" ]; then
    k8sha_fail "$K8SHA_ETCD_URL has no etcd and etcdctl binaries"
  fi
  got=$(etcd_version_of "$dir/etcd")
  [ "$got" = "$want" ] || k8sha_fail "$K8SHA_ETCD_URL contains etcd $got, but versions.etcd is $want"
  for bin in etcd etcdctl etcdutl; do
    [ -f "$dir/$bin" ] || continue
    install -m 0755 -o root -g root "$dir/$bin" "$K8SHA_ETCD_BIN_DIR/$bin.k8sha-new"
    mv -f "$K8SHA_ETCD_BIN_DIR/$bin.k8sha-new" "$K8SHA_ETCD_BIN_DIR/$bin"
    K8SHA_CHANGED+=("$K8SHA_ETCD_BIN_DIR/$bin")
  done
  k8sha_log "installed etcd $want into $K8SHA_ETCD_BIN_DIR"
}

etcd_install_package() {
  local have
  k8sha_apt_install etcd-server etcd-client
  # A package upgrade restarts etcd from dpkg; held, upgrades happen when someone decides to,
  # member by member, instead of on several members at once by unattended-upgrades.
  if [ "$(apt-mark showhold | grep -cxE 'etcd-(server|client)')" != 2 ]; then
    apt-mark hold etcd-server etcd-client >/dev/null
    k8sha_log "held etcd-server and etcd-client (upgrade them one member at a time)"
  fi
  have=$(etcd_version_of "$K8SHA_ETCD_BIN_DIR/etcd")
  if [ "$have" != "$K8SHA_ETCD_VERSION" ]; then
    k8sha_log "etcd $have comes from the distribution (versions.etcd=$K8SHA_ETCD_VERSION applies to etcd.source.kind=tarball)"
  fi
}

# etcd_write_state TEXT: the new/existing decision, read by etcd.service after etcd.env.
etcd_write_state() {
  local text
  text=$(printf '# Decided by k8s-ha etcd-member before %s first started; etcd ignores it once it has data.\n%s' "$NAME" "$1")
  if [ -f "$STATE_FILE" ] && [ "$(cat "$STATE_FILE")" = "$text" ]; then
    return 0
  fi
  printf '%s\n' "$text" >"$STATE_FILE.k8sha-new"
  chmod 0644 "$STATE_FILE.k8sha-new"
  mv -f "$STATE_FILE.k8sha-new" "$STATE_FILE"
  K8SHA_CHANGED+=("$STATE_FILE")
  k8sha_log "updated $STATE_FILE ($(grep -o 'STATE=[a-z]*' "$STATE_FILE"))"
}

# This member's line in a `member list`, matched by peer URL (a member added at run time has no
# name until it starts).
etcd_find_self() { awk -F', ' -v peer="$K8SHA_ETCD_PEER_URL" '$4 == peer' <<<"$1"; }

# Runs under the membership lock. Makes sure this member is registered in the running cluster and
# prints the ETCD_INITIAL_CLUSTER to join with: the live membership, which etcd checks against.
#
# One new member at a time: adding a member raises the quorum at once (3 -> 4 members needs 3),
# but the new member only counts once it has started and caught up. Two added-but-unstarted
# members in a 3-member cluster make 5 members with quorum 3 and only 3 running: one more failure
# and the cluster stops. So a member is added only when every registered member has started; the
# lock makes hosts running this step at the same time take turns, and the next one waits here.
etcd_register_self() {
  local others=$1 list self clash pending unnamed added id deadline=$((SECONDS + JOIN_TIMEOUT)) replaced=0
  while :; do
    list=$(etcd_member_list "$others") || k8sha_fail "the running etcd cluster ($others) stopped answering"
    clash=$(awk -F', ' -v name="$NAME" -v peer="$K8SHA_ETCD_PEER_URL" '$3 == name && $4 != peer' <<<"$list")
    if [ -n "$clash" ]; then
      k8sha_fail "a member named $NAME is registered with peer URL $(etcd_field 4 "$clash"), the plan says" \
        "$K8SHA_ETCD_PEER_URL; remove the old one first: etcdctl member remove $(etcd_field 1 "$clash")"
    fi
    self=$(etcd_find_self "$list")
    if [ -n "$self" ] && [ -n "$(etcd_field 5 "$self")" ]; then
      # Registered and has run before, yet this host has no data: it was rebuilt or lost its data
      # directory. Rejoining under the old ID with an empty log could lose acknowledged writes,
      # so the registration is replaced (etcd's "replace a failed member": remove, then add).
      id=$(etcd_field 1 "$self")
      [ "$replaced" -eq 0 ] || k8sha_fail "member $NAME ($id) is still registered after its removal"
      k8sha_log "member $NAME ($id) has run before but this host has no data: replacing its registration"
      etcd_ctl "$others" member remove "$id" >&2 || k8sha_fail "could not remove the stale member $NAME ($id)"
      replaced=1
      continue
    fi
    if [ -n "$self" ]; then
      break # registered, never started: join as it is
    fi
    pending=$(awk -F', ' '$5 == "" { printf "%s%s (%s)", sep, ($3 == "" ? $4 : $3), $1; sep = ", " }' <<<"$list")
    if [ -z "$pending" ]; then
      k8sha_log "adding $NAME ($K8SHA_ETCD_PEER_URL) to the running cluster"
      if added=$(etcd_ctl "$others" member add "$NAME" --peer-urls="$K8SHA_ETCD_PEER_URL" 2>&1); then
        continue
      fi
      # etcd's own guard (strict reconfiguration check): it takes a new voting member only when
      # its leader has been connected to every member for 5 s, so right after a member started
      # or while one is down it answers "unhealthy cluster". The first passes; the second is a
      # real reason to stop, reported when the wait is over.
      case $added in *"unhealthy cluster"* | *"not enough started members"*) ;;
        *) k8sha_fail "etcd refused to add $NAME: $(tail -n 1 <<<"$added")" ;;
      esac
      if [ "$SECONDS" -ge "$deadline" ]; then
        k8sha_fail "etcd refused to add $NAME for ${JOIN_TIMEOUT}s ($(tail -n 1 <<<"$added")): a member is" \
          "down or unreachable, and adding one now could cost the quorum. Check: etcdctl endpoint health --cluster"
      fi
      k8sha_log "etcd is not ready to take a new member yet ($(tail -n 1 <<<"$added")); retrying"
      sleep 2
      continue
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      k8sha_fail "member(s) $pending were added but have not started after ${JOIN_TIMEOUT}s; etcd takes" \
        "one new member at a time. Start it (re-run its step) or remove it: etcdctl member remove ID"
    fi
    k8sha_log "waiting for $pending to start before adding $NAME (one new member at a time)"
    sleep 2
  done
  unnamed=$(awk -F', ' -v peer="$K8SHA_ETCD_PEER_URL" '$3 == "" && $4 != peer { print $1 }' <<<"$list")
  [ -z "$unnamed" ] || k8sha_fail "member(s) $unnamed were added but never started, so $NAME cannot" \
    "join yet: start them (re-run their steps) or remove them (etcdctl member remove ID)"
  awk -F', ' -v name="$NAME" -v peer="$K8SHA_ETCD_PEER_URL" \
    '{ printf "%s%s=%s", sep, ($4 == peer ? name : $3), $4; sep = "," }' <<<"$list"
}

# new or existing, decided only while this member has no data (afterwards etcd ignores both).
etcd_decide_state() {
  local others initial
  if [ -d "$DATA_DIR/member" ]; then
    if [ ! -f "$STATE_FILE" ]; then
      etcd_write_state "ETCD_INITIAL_CLUSTER_STATE=existing"
    fi
    return 0
  fi
  others=$(etcd_others)
  if [ -n "$others" ] && etcd_member_list "$others" >/dev/null; then
    # Joining needs the cluster's quorum (for the lock and for `member add`): fail fast without it.
    etcd_healthy "$others" || k8sha_fail "the other members answer but none is healthy (no" \
      "quorum), so $NAME cannot join now; bring them back first (etcdctl endpoint health --cluster)"
    initial=$(etcd_locked membership etcd_register_self "$others")
    etcd_write_state "$(printf 'ETCD_INITIAL_CLUSTER_STATE=existing\nETCD_INITIAL_CLUSTER=%s' "$initial")"
  else
    # Nobody answers: every member is new (they start together and elect a leader once a quorum
    # of them runs). See docs/etcd.md for the one case this cannot tell apart.
    k8sha_log "no other member answers: $NAME bootstraps the cluster with the plan's members"
    etcd_write_state "ETCD_INITIAL_CLUSTER_STATE=new"
  fi
}

# Restart a member of a healthy cluster under the restart lock and wait until it is healthy
# again, so a change rolled out to every member never takes more than one down at a time.
etcd_restart_and_wait() {
  timeout 120 systemctl restart etcd.service || k8sha_fail "etcd failed to restart (journalctl -u etcd)"
  k8sha_wait 120 "$NAME to be healthy after its restart" etcd_healthy "$K8SHA_ETCD_CLIENT_URL"
}

etcd_apply_service() {
  local state
  systemctl enable etcd.service >/dev/null 2>&1 || k8sha_fail "cannot enable etcd.service"
  state=$(systemctl is-active etcd.service 2>/dev/null || true)
  case $state in
    active | activating | reloading)
      local restart_on=("${RESTART_ON[@]}")
      if [ -d "$DATA_DIR/member" ] && [ "$(etcd_runtime_settings)" = "$SETTINGS_BEFORE" ]; then
        restart_on=("${restart_on[@]:1}") # etcd.env changed only where etcd no longer looks
      fi
      k8sha_changed "${restart_on[@]}" || return 0
      if etcd_healthy "$K8SHA_ETCD_CLIENT_URL"; then
        etcd_locked restart etcd_restart_and_wait
      else # no quorum to protect (e.g. the cluster is still forming)
        systemctl restart --no-block etcd.service || k8sha_fail "etcd failed to restart (journalctl -u etcd)"
      fi
      k8sha_log "restarted etcd"
      ;;
    *)
      # --no-block: with Type=notify a new member is "activating" until a quorum of members
      # runs, and the members' steps may run one after another. etcd-health waits for quorum.
      systemctl start --no-block etcd.service || k8sha_fail "etcd failed to start (journalctl -u etcd)"
      k8sha_log "started etcd"
      ;;
  esac
}

etcd_listening() {
  local address=${K8SHA_ETCD_CLIENT_URL#https://}
  # shellcheck disable=SC2016 # $1 and $2 belong to the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${address%:*}" "${address##*:}" 2>/dev/null
}

# Bounded: the process is up and its client port accepts connections. Health needs a quorum,
# which a member of a forming cluster cannot have alone; that wait belongs to etcd-health.
etcd_wait_up() {
  local deadline=$((SECONDS + 60)) restarts
  until etcd_listening; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      restarts=$(systemctl show -p NRestarts --value etcd.service 2>/dev/null || echo '?')
      k8sha_fail "etcd on $NAME is not listening on $K8SHA_ETCD_CLIENT_URL after 60s" \
        "($restarts restarts); see journalctl -u etcd"
    fi
    sleep 0.5
  done
  if etcd_healthy "$(etcd_others)"; then # a running cluster: this member must join it now
    k8sha_wait 120 "$NAME to be healthy in the running cluster" etcd_healthy "$K8SHA_ETCD_CLIENT_URL"
  else
    k8sha_log "etcd is up on $NAME; the cluster has no quorum yet (etcd-health waits for it)"
  fi
}

# ---- the step ----
if ! getent passwd etcd >/dev/null; then
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin etcd
  k8sha_log "created the etcd system user"
fi
install -d -m 0700 -o etcd -g etcd "$DATA_DIR" "$K8SHA_ETCD_BACKUP_DIR"

# Files before the package: Debian's postinst starts etcd.service on installation, which then is
# already our unit, whose ConditionPathExists skips the start until the state file is written.
SETTINGS_BEFORE=$(etcd_runtime_settings)
k8sha_install_files
case $K8SHA_ETCD_SOURCE in
  package) etcd_install_package ;;
  tarball) etcd_install_tarball ;;
  *) k8sha_fail "unknown etcd source kind '$K8SHA_ETCD_SOURCE'" ;;
esac
if [ ! -x "$K8SHA_ETCD_BIN_DIR/etcd" ] || [ ! -x "$ETCDCTL" ]; then
  k8sha_fail "etcd or etcdctl is missing from $K8SHA_ETCD_BIN_DIR after the installation"
fi

etcd_decide_state
etcd_apply_service
etcd_wait_up
k8sha_service etcd-backup.timer restart /etc/systemd/system/etcd-backup.timer
k8sha_done
