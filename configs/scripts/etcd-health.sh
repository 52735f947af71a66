#!/usr/bin/env bash
# etcd health: runs on the first member after every member step. Waits (bounded) until every
# member of the cluster is healthy and every planned member has started, then shows the cluster.
# After a restore (etcd.restore) it also writes the restore's mark, K8SHA_ETCD_MARK_KEY =
# K8SHA_ETCD_MARK_VALUE, once the restored cluster is whole.
# Env: K8SHA_ETCD_ENDPOINTS K8SHA_ETCD_NAMES K8SHA_ETCD_BIN_DIR K8SHA_ETCD_PKI
#      K8SHA_ETCD_HEALTH_TIMEOUT (K8SHA_ETCD_MARK_KEY K8SHA_ETCD_MARK_VALUE)
set -euo pipefail

# The etcd_* helpers come from etcd-lib.sh (Step.libs).

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
if [ -n "${K8SHA_ETCD_MARK_KEY:-}" ] &&
  [ "$(etcd_ctl "$K8SHA_ETCD_ENDPOINTS" get --print-value-only "$K8SHA_ETCD_MARK_KEY")" != "$K8SHA_ETCD_MARK_VALUE" ]; then
  etcd_ctl "$K8SHA_ETCD_ENDPOINTS" put "$K8SHA_ETCD_MARK_KEY" "$K8SHA_ETCD_MARK_VALUE" >/dev/null ||
    k8sha_fail "cannot write $K8SHA_ETCD_MARK_KEY to the restored cluster"
  K8SHA_CHANGED+=("(marked the cluster restored: $K8SHA_ETCD_MARK_KEY)")
fi
k8sha_done
