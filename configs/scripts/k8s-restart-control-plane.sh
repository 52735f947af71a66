#!/usr/bin/env bash
# After etcd.restore: this master's kube-apiserver, kube-controller-manager and kube-scheduler
# restarted against the restored etcd (their caches and watches hold what the snapshot does not),
# once per snapshot, one master at a time so that the VIP always has apiservers behind it. The
# kubelet starts each stopped container again from its static-pod manifest.
# Env: K8SHA_NODE K8SHA_NODE_IP K8SHA_API_PORT K8SHA_RESTORE_SHA256
set -euo pipefail
# k8sha_note comes from k8s-lib.sh (Step.libs).

mark=/var/lib/k8s-ha/control-plane-restarted-for # the snapshot this master's control plane last restarted for
if [ "$(cat "$mark" 2>/dev/null)" = "$K8SHA_RESTORE_SHA256" ]; then
  k8sha_done
  exit 0
fi
if [ ! -f /etc/kubernetes/manifests/kube-apiserver.yaml ]; then
  k8sha_log "$K8SHA_NODE has no control plane yet: it starts on the restored etcd"
else
  k8s_restart_static_pods kube-apiserver kube-controller-manager kube-scheduler
  k8sha_wait 300 "the local apiserver https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz" \
    curl -fsS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt "https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz"
  k8sha_note "restarted the control plane of $K8SHA_NODE on the restored etcd"
fi
mkdir -p "${mark%/*}"
printf '%s\n' "$K8SHA_RESTORE_SHA256" >"$mark"

k8sha_done
