#!/usr/bin/env bash
# Delete of a control-plane or worker join step (and of the init step): take the node out of the
# cluster, then `kubeadm reset -f`.
# A control-plane node holds /etc/kubernetes/admin.conf, which points at the VIP: through it the
# node drains and deletes its own Node object while the remaining control plane serves the
# request. A worker holds no credential that may delete Nodes: its Node was already drained and
# deleted by k8s-drain.sh on the first control-plane node (worker_membership_step's delete).
# With external etcd there is no etcd member to remove. Every wait is bounded, and an
# unreachable API only produces a warning: the reset must not block a destroy.
# Env: K8SHA_NODE (K8SHA_ROLE)
set -euo pipefail
# K8S_ADMIN, k8sha_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

if [ -f "$K8S_ADMIN" ] && command -v kubectl >/dev/null 2>&1; then
  if node=$(k8s_kubectl get node "$K8SHA_NODE" --ignore-not-found -o name 2>/dev/null); then
    if [ -n "$node" ]; then
      k8s_kubectl drain "$K8SHA_NODE" --ignore-daemonsets --delete-emptydir-data --force \
        --timeout=180s >&2 || k8sha_log "WARNING: drain of $K8SHA_NODE did not finish; deleting the Node anyway"
      if k8s_kubectl delete node "$K8SHA_NODE" --wait=true --timeout=60s >&2; then
        k8sha_note "deleted Node $K8SHA_NODE"
      else
        k8sha_log "WARNING: could not delete Node $K8SHA_NODE: delete it with kubectl from another node"
      fi
    fi
  else
    k8sha_log "WARNING: the API behind the VIP is unreachable: Node $K8SHA_NODE was not deleted" \
      "(if other control-plane nodes remain: kubectl delete node $K8SHA_NODE)"
  fi
fi

if command -v kubeadm >/dev/null 2>&1 &&
  { [ -f /etc/kubernetes/kubelet.conf ] || [ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" ]; }; then
  kubeadm reset -f --cri-socket unix:///run/containerd/containerd.sock </dev/null >&2 ||
    k8sha_fail "kubeadm reset failed on $K8SHA_NODE"
  k8sha_note "kubeadm reset"
fi
# kubeadm reset leaves the CNI configuration and this project's kubeadm configs behind.
for leftover in /etc/cni/net.d /etc/kubernetes/k8s-ha; do
  if [ -n "$(ls -A "$leftover" 2>/dev/null)" ]; then
    find "$leftover" -mindepth 1 -delete
    k8sha_note "emptied $leftover"
  fi
done

k8sha_done
