#!/bin/bash
# k8s-ha etcd backup: one verified snapshot of a member, older ones pruned. Run by etcd-backup.service
# (as the etcd user); safe to run by hand. Settings come from the environment (the unit sets them):
#   K8SHA_ETCD_NAME      member name, part of the file name       K8SHA_BACKUP_DIR     where snapshots go
#   K8SHA_ETCD_ENDPOINT  client URL to snapshot (the local member) K8SHA_BACKUP_RETAIN  snapshots to keep
#   K8SHA_ETCD_CACERT K8SHA_ETCD_CERT K8SHA_ETCD_KEY  client TLS    K8SHA_ETCD_BIN_DIR   etcdctl/etcdutl
# A snapshot is written under a temporary name, checked with `snapshot status`, and only then
# renamed to etcd-NAME-YYYYmmddTHHMMSSZ.db, so a file with the final name is always complete.
set -euo pipefail
umask 077

name=${K8SHA_ETCD_NAME:?K8SHA_ETCD_NAME is not set}
endpoint=${K8SHA_ETCD_ENDPOINT:-https://127.0.0.1:2379}
cacert=${K8SHA_ETCD_CACERT:-/etc/etcd/pki/ca.crt}
cert=${K8SHA_ETCD_CERT:-/etc/etcd/pki/healthcheck-client.crt}
key=${K8SHA_ETCD_KEY:-/etc/etcd/pki/healthcheck-client.key}
dir=${K8SHA_BACKUP_DIR:-/var/backups/etcd}
retain=${K8SHA_BACKUP_RETAIN:-24}
bin=${K8SHA_ETCD_BIN_DIR:-/usr/bin}

fail() {
  printf 'etcd-backup: ERROR: %s\n' "$*" >&2
  exit 1
}

case $retain in '' | *[!0-9]* | 0) fail "K8SHA_BACKUP_RETAIN must be a positive number, got '$retain'" ;; esac
if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then
  fail "backup directory $dir is missing or not writable by $(id -un)"
fi
# etcdctl refuses flags that an ETCDCTL_* variable also sets; ours are all flags.
unset "${!ETCDCTL_@}"

etcdctl=$bin/etcdctl
# etcd 3.5 moved snapshot status/restore to etcdutl (3.6 removed them from etcdctl).
status_tool=("$etcdctl")
if [ -x "$bin/etcdutl" ]; then status_tool=("$bin/etcdutl"); fi

# One backup at a time, also when a manual run meets the timer's.
exec 9>"$dir/.lock"
flock -w 600 9 || fail "another backup still holds $dir/.lock after 10 minutes"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final=$dir/etcd-$name-$stamp.db
partial=$dir/.etcd-$name-$stamp.db.partial
trap 'rm -f -- "$partial" "$partial.part"' EXIT

"$etcdctl" --endpoints="$endpoint" --cacert="$cacert" --cert="$cert" --key="$key" \
  --dial-timeout=5s --command-timeout=300s snapshot save "$partial" >/dev/null ||
  fail "snapshot of $endpoint failed (is etcd running? journalctl -u etcd)"
status=$("${status_tool[@]}" snapshot status "$partial" -w table) ||
  fail "the snapshot just taken does not verify: ${status_tool[*]} snapshot status $partial"
mv -f -- "$partial" "$final"
printf 'etcd-backup: saved %s\n%s\n' "$final" "$status"

# Prune: names sort by time, so everything but the newest $retain goes.
mapfile -t snapshots < <(find "$dir" -maxdepth 1 -type f -name "etcd-$name-*.db" -printf '%f\n' | sort)
excess=$((${#snapshots[@]} - retain))
for ((i = 0; i < excess; i++)); do
  rm -f -- "${dir:?}/${snapshots[i]}"
  printf 'etcd-backup: pruned %s\n' "${snapshots[i]}"
done
