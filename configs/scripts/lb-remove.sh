#!/usr/bin/env bash
# Load balancer removal (the loadbalancer step's delete, on `destroy` or when the host leaves the
# stack): keepalived stops first, so the VIP leaves this host at once (it sends a priority-0 advert
# as it exits) while HAProxy still serves; then HAProxy. Both are disabled and k8s-ha's files
# removed, so a host that stays (an existing host) holds no VIP and serves no apiserver port after
# a reboot either. The packages stay. Safe to re-run.
set -euo pipefail
for unit in keepalived haproxy; do
  if systemctl is-active --quiet "$unit" || systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || systemctl stop "$unit"
    k8sha_log "stopped and disabled $unit"
  fi
done
k8sha_remove_files
systemctl daemon-reload
if ip -o addr show | grep -qF " $K8SHA_VIP/"; then
  k8sha_fail "the VIP $K8SHA_VIP is still on this host after keepalived stopped"
fi
k8sha_log "load balancer removed (packages kept)"
