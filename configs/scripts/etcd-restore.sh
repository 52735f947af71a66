#!/usr/bin/env bash
# etcd-restore SNAPSHOT [CLUSTER_TOKEN]: rebuild this member's data from a snapshot.
#
# Disaster recovery for the whole cluster (quorum lost for good, or bad data written): copy ONE
# snapshot file (from etcd-backup, /var/backups/etcd/etcd-*.db) to every member and run, as root,
#   /usr/local/libexec/k8s-ha/etcd-restore /path/to/etcd-NAME-STAMP.db
# on each member of the plan. Each run restores into a fresh directory with this member's name,
# the plan's initial cluster and a new cluster token, stops etcd, moves the old data aside (never
# deletes it), puts the restored data in place and starts etcd. The members form a new cluster
# once a quorum of them is restored. The token defaults to one derived from the snapshot's
# checksum, so every member agrees on it without coordination, and old members (old token) can
# never join the restored cluster. See docs/etcd.md.
#
# Settings (defaults are what the member step installs; tests point them elsewhere):
#   K8SHA_ETCD_ENV_FILE (/etc/etcd/etcd.env)  K8SHA_ETCD_STATE_FILE (/etc/etcd/cluster-state.env)
#   K8SHA_ETCD_BIN_DIR (etcdutl/etcdctl on PATH)
# Also works as a bundle body: `bash -s -- SNAPSHOT < bundle`.
set -euo pipefail
umask 077

say() { printf 'etcd-restore: %s\n' "$*" >&2; }
die() {
  printf 'etcd-restore: ERROR: %s\n' "$*" >&2
  exit 1
}

snapshot=${1:-}
env_file=${K8SHA_ETCD_ENV_FILE:-/etc/etcd/etcd.env}
state_file=${K8SHA_ETCD_STATE_FILE:-/etc/etcd/cluster-state.env}
[ -n "$snapshot" ] || die "usage: etcd-restore SNAPSHOT [CLUSTER_TOKEN] (run on every member, same snapshot)"
[ -f "$snapshot" ] || die "no snapshot file $snapshot"
[ -f "$env_file" ] || die "no $env_file: is this an etcd member set up by k8s-ha?"
unset "${!ETCDCTL_@}"

# setting KEY: its value in the member's env file (plain KEY=value lines).
setting() {
  local value
  value=$(sed -n "s/^$1=//p" "$env_file" | tail -n 1)
  [ -n "$value" ] || die "$1 is missing from $env_file"
  printf '%s' "$value"
}
name=$(setting ETCD_NAME)
data_dir=$(setting ETCD_DATA_DIR)
initial_cluster=$(setting ETCD_INITIAL_CLUSTER)
peer_urls=$(setting ETCD_INITIAL_ADVERTISE_PEER_URLS)
token=${2:-$(setting ETCD_INITIAL_CLUSTER_TOKEN)-restore-$(sha256sum "$snapshot" | cut -c1-12)}

# etcd 3.5 moved snapshot status/restore to etcdutl (3.6 removed them from etcdctl).
tool=
for candidate in etcdutl etcdctl; do
  if [ -n "${K8SHA_ETCD_BIN_DIR:-}" ] && [ -x "$K8SHA_ETCD_BIN_DIR/$candidate" ]; then
    tool=$K8SHA_ETCD_BIN_DIR/$candidate
  elif [ -z "${K8SHA_ETCD_BIN_DIR:-}" ]; then
    tool=$(command -v "$candidate" || true)
  fi
  [ -z "$tool" ] || break
done
[ -n "$tool" ] || die "neither etcdutl nor etcdctl is installed"

"$tool" snapshot status "$snapshot" -w table >&2 || die "$snapshot is not a valid etcd snapshot"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
staging=$data_dir.restore-$stamp
say "restoring $name from $snapshot into $staging (cluster token $token)"
# Kubernetes' clients hold resourceVersions from before the snapshot: a revision bumped far past
# them, and marked compacted, makes every watch start again from a list instead of missing what
# changed (etcdutl 3.5.10 and later; the Kubernetes documentation's advice for a restore).
bump=()
if "$tool" snapshot restore --help 2>&1 | grep -q -- --bump-revision; then
  bump=(--bump-revision 1000000000 --mark-compacted)
fi
"$tool" snapshot restore "$snapshot" --name "$name" --initial-cluster "$initial_cluster" \
  --initial-cluster-token "$token" --initial-advertise-peer-urls "$peer_urls" --data-dir "$staging" \
  "${bump[@]}" >&2 || die "snapshot restore failed; nothing was changed (remove $staging)"

# Only now stop the member: it ran until its replacement data was ready.
systemctl stop etcd.service || die "cannot stop etcd.service; restored data left in $staging"
if systemctl is-active --quiet etcd.service; then
  die "etcd.service is still running; restored data left in $staging"
fi
owner=$(stat -c %U:%G "$data_dir" 2>/dev/null || echo etcd:etcd)
install -d -m 0700 "$data_dir"
if [ -d "$data_dir/member" ]; then
  aside=$data_dir.before-restore-$stamp
  mkdir -m 0700 "$aside"
  mv "$data_dir/member" "$aside/"
  say "kept the previous data in $aside"
fi
mv "$staging/member" "$data_dir/member"
rmdir "$staging"
chown -R "$owner" "$data_dir"
# The data now defines the membership; the state file only has to exist for etcd.service to start.
if [ ! -f "$state_file" ]; then
  printf 'ETCD_INITIAL_CLUSTER_STATE=existing\n' >"$state_file"
  chmod 0644 "$state_file"
fi

systemctl start --no-block etcd.service || die "etcd.service failed to start (journalctl -u etcd)"
say "started etcd on $name"
say "done on $name. Run the same command with the same snapshot on every other member; the cluster" \
  "is back once a quorum of them is restored: etcdctl --endpoints=... endpoint health --cluster"
