#!/usr/bin/env bash
# etcd.restore through the program: on every member at once, once per snapshot. The snapshot is
# fetched and checked against its sha256 (a mismatch is refused before anything changes), then the
# member's own etcd-restore runs: every member derives the same new cluster token from the
# snapshot, the old data is kept aside, and the members form the restored cluster once a quorum of
# them is back. Passed over on a member already restored from this snapshot, and on every member
# once the cluster carries the restore's mark (a member added later joins the restored cluster).
# Env: K8SHA_ETCD_NAME K8SHA_RESTORE_URL K8SHA_RESTORE_SHA256 K8SHA_ETCD_MARK_KEY K8SHA_ETCD_ENDPOINTS
#      K8SHA_ETCD_BIN_DIR K8SHA_ETCD_PKI
set -euo pipefail
# The etcd_* helpers come from etcd-lib.sh (Step.libs).

mark=/var/lib/k8s-ha/etcd-restored # the sha256 of the snapshot this member was restored from
want=$K8SHA_RESTORE_SHA256
if [ "$(cat "$mark" 2>/dev/null)" = "$want" ]; then
  k8sha_log "$K8SHA_ETCD_NAME was restored from snapshot ${want:0:12} before"
  k8sha_done
  exit 0
fi
k8sha_install_files # the client certificate etcdctl uses (normally unchanged)
if [ "$(ETCD_TIMEOUT=3s etcd_ctl "$K8SHA_ETCD_ENDPOINTS" get --print-value-only "$K8SHA_ETCD_MARK_KEY" \
  2>/dev/null || true)" = "$want" ]; then
  k8sha_log "the cluster was restored from snapshot ${want:0:12} before $K8SHA_ETCD_NAME was a member: nothing to do"
  k8sha_done
  exit 0
fi
snapshot=/var/lib/k8s-ha/etcd-snapshots/$want.db
k8sha_fetch "$K8SHA_RESTORE_URL" "$want" "$snapshot" "the etcd snapshot (etcd.restore)"
chmod 0600 "$snapshot"
/usr/local/libexec/k8s-ha/etcd-restore "$snapshot" ||
  k8sha_fail "etcd-restore failed on $K8SHA_ETCD_NAME (output above)"
printf '%s\n' "$want" >"$mark"
k8sha_note "restored $K8SHA_ETCD_NAME from snapshot ${want:0:12}"

k8sha_done
