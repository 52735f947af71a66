#!/usr/bin/env bash
# etcd health: runs on the first member after every member step. Waits (bounded) until every
# member of the cluster is healthy and every planned member has started, then shows the cluster.
# Env: K8SHA_ETCD_ENDPOINTS K8SHA_ETCD_NAMES K8SHA_ETCD_BIN_DIR K8SHA_ETCD_PKI
#      K8SHA_ETCD_HEALTH_TIMEOUT
set -euo pipefail

# ---- etcd helpers: identical in etcd-member.sh, etcd-remove.sh and etcd-health.sh (a test checks) ----
# Every etcdctl call authenticates as the healthcheck client, with short timeouts so that a dead
# member costs seconds, never minutes. ETCDCTL_* variables would clash with the flags: dropped.
unset "${!ETCDCTL_@}"
ETCDCTL=$K8SHA_ETCD_BIN_DIR/etcdctl
ETCD_TLS=(--cacert="$K8SHA_ETCD_PKI/ca.crt" --cert="$K8SHA_ETCD_PKI/healthcheck-client.crt"
  --key="$K8SHA_ETCD_PKI/healthcheck-client.key")

# etcd_ctl ENDPOINTS ARGS...: one etcdctl call against comma-separated ENDPOINTS (the client uses
# whichever answers). ETCD_TIMEOUT (default 5s) bounds the call once connected.
etcd_ctl() {
  local targets=$1
  shift
  "$ETCDCTL" "${ETCD_TLS[@]}" --endpoints="$targets" --dial-timeout=2s --command-timeout="${ETCD_TIMEOUT:-5s}" "$@"
}

# etcd_member_list ENDPOINTS: `member list` from any of them. One member per line, fields
# separated by ", ": ID (hex), status, name, peer URLs, client URLs, is-learner. A member that has
# never run has no client URLs (and, when added at run time, no name yet).
etcd_member_list() { ETCD_TIMEOUT=3s etcd_ctl "$1" member list 2>/dev/null; }

# etcd_field N LINE: field N of a `member list` line.
etcd_field() { awk -F', ' -v n="$1" '{ print $n }' <<<"$2"; }

# etcd_healthy_urls ENDPOINTS: those of them that pass a health check (which needs quorum).
etcd_healthy_urls() {
  local out
  out=$(ETCD_TIMEOUT=3s etcd_ctl "$1" endpoint health 2>&1 || true)
  awk '$2 == "is" && $3 == "healthy:" { print $1 }' <<<"$out"
}

# etcd_healthy ENDPOINTS: true when at least one of them is healthy, i.e. the cluster has quorum.
etcd_healthy() { [ -n "$(etcd_healthy_urls "$1")" ]; }

# etcd_locked NAME COMMAND...: run COMMAND in a subshell while holding the etcd lock
# k8s-ha/lock/NAME, so that hosts running this step at the same time take turns (membership
# changes and restarts one member at a time). The lock lives in etcd, so it needs quorum; it is
# released when COMMAND ends or fails, and by its lease TTL if this host dies. ETCD_LOCK_ENDPOINTS
# (default: all members) are the members to hold it through.
etcd_locked() {
  local lock=k8s-ha/lock/$1
  shift
  (
    held=$(mktemp "$K8SHA_STAGE/etcd-lock.XXXXXX")
    timeout 900 "$ETCDCTL" "${ETCD_TLS[@]}" --endpoints="${ETCD_LOCK_ENDPOINTS:-$K8SHA_ETCD_ENDPOINTS}" --dial-timeout=2s \
      lock --ttl=15 "$lock" >"$held" 2>"$held.err" &
    holder=$!
    trap 'kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true' EXIT
    deadline=$((SECONDS + ${K8SHA_ETCD_LOCK_TIMEOUT:-300}))
    waited=0
    until [ -s "$held" ]; do # etcdctl prints the lock's key once it holds it
      if [ "$waited" -eq 10 ]; then
        k8sha_log "waiting for the etcd lock $lock (another member's step holds it)"
      fi
      waited=$((waited + 1))
      if ! kill -0 "$holder" 2>/dev/null; then
        k8sha_fail "could not take the etcd lock $lock: $(tail -n 2 "$held.err")"
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        k8sha_fail "waited ${K8SHA_ETCD_LOCK_TIMEOUT:-300}s for the etcd lock $lock; its holder is" \
          "another member's step (see: etcdctl get --prefix $lock)"
      fi
      sleep 0.2
    done
    "$@"
  )
}
# ---- end of etcd helpers ----

TIMEOUT=${K8SHA_ETCD_HEALTH_TIMEOUT:-120}

# Planned members that are not registered, or registered but never started (no client URLs).
etcd_not_started() {
  local name absent=()
  for name in $K8SHA_ETCD_NAMES; do
    awk -F', ' -v name="$name" '$3 == name && $5 != "" { found = 1 } END { exit !found }' <<<"$1" ||
      absent+=("$name")
  done
  printf '%s' "${absent[*]}"
}

k8sha_install_files # the client certificate etcdctl uses (normally unchanged)

deadline=$((SECONDS + TIMEOUT))
while :; do
  health=$(etcd_ctl "$K8SHA_ETCD_ENDPOINTS" endpoint health --cluster 2>&1) && healthy_all=1 || healthy_all=0
  list=$(etcd_member_list "$K8SHA_ETCD_ENDPOINTS" || true)
  not_started=$(etcd_not_started "$list")
  if [ "$healthy_all" = 1 ] && [ -z "$not_started" ]; then
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    healthy=$(grep -c ' is healthy' <<<"$health" || true)
    members=$(grep -c . <<<"$list" || true)
    [ "$members" -gt 0 ] || members=$(wc -w <<<"$K8SHA_ETCD_NAMES")
    printf '%s\n' "$health" >&2
    k8sha_fail "etcd is not healthy after ${TIMEOUT}s: $healthy of $members members healthy, quorum needs" \
      "$((members / 2 + 1))${not_started:+; not started: $not_started}. Debug on a member: etcdctl" \
      "--endpoints=$K8SHA_ETCD_ENDPOINTS ${ETCD_TLS[*]} endpoint health --cluster; journalctl -u etcd"
  fi
  sleep 1
done

extra=$(awk -F', ' -v planned=" $K8SHA_ETCD_NAMES " 'index(planned, " " $3 " ") == 0 { print $3 " (" $1 ")" }' <<<"$list")
if [ -n "$extra" ]; then
  k8sha_log "WARNING: members not in the plan: $(tr '\n' ' ' <<<"$extra")- remove them with etcdctl member remove ID"
fi
printf '%s\n' "$health"
etcd_ctl "$K8SHA_ETCD_ENDPOINTS" endpoint status --cluster -w table
k8sha_done
