#!/usr/bin/env bash
# First step on every host: wait for first boot to finish, then prove this is the machine we meant.
# Env: K8SHA_NODE K8SHA_NODE_IP K8SHA_HOST_KEY (the pinned public key, "ssh-ed25519 AAAA...")
set -euo pipefail

if command -v cloud-init >/dev/null 2>&1 && [ -d /var/lib/cloud/instance ]; then
  # 'status --wait' exits non-zero on a degraded boot; report it, then judge by the checks below.
  if ! timeout 900 cloud-init status --wait >/dev/null 2>&1; then
    k8sha_log "cloud-init reported a problem: $(cloud-init status --long 2>&1 | tr '\n' ' ')"
  fi
fi

actual_name=$(hostname)
[ "$actual_name" = "$K8SHA_NODE" ] ||
  k8sha_fail "hostname is '$actual_name', expected '$K8SHA_NODE': is the IP assigned to the right machine?"

ip -o -4 addr show | awk '{print $4}' | cut -d/ -f1 | grep -qxF "$K8SHA_NODE_IP" ||
  k8sha_fail "$K8SHA_NODE_IP is not configured on any interface of $K8SHA_NODE"

expected_key=$(printf '%s\n' "$K8SHA_HOST_KEY" | awk '{print $2}')
found=no
for pub in /etc/ssh/ssh_host_*_key.pub; do
  [ -f "$pub" ] || continue
  if [ "$(awk '{print $2}' "$pub")" = "$expected_key" ]; then found=yes; fi
done
[ "$found" = yes ] || k8sha_fail "no SSH host key of $K8SHA_NODE matches the pinned key"

mkdir -p /var/lib/k8s-ha
k8sha_install_files
k8sha_done
