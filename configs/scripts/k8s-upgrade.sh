#!/usr/bin/env bash
# One node's part of a rolling Kubernetes upgrade, the way kubeadm documents it. The program chains
# these steps: the first master (`kubeadm upgrade apply`), then the other masters one at a time
# (`kubeadm upgrade node`), then the workers one at a time, each drained before by its drain step
# on the first master and given back after by its uncordon step. A master drains and uncordons
# itself (it holds admin.conf). kubeadm goes first, the kubelet and kubectl after the node's
# control plane. A node that has not joined yet, or whose kubelet already runs K8SHA_KUBE_VERSION,
# is left alone: on a new cluster every step of the chain changes nothing.
# Env: K8SHA_NODE K8SHA_NODE_IP K8SHA_API_PORT K8SHA_KUBE_VERSION K8SHA_UPGRADE (first | control-plane | worker)
#      K8SHA_FILES: kubeadm, kubelet and kubectl, "component version sha256 url" a line
#      K8SHA_IGNORE_PREFLIGHT: kubeadm preflight checks to skip (comma-separated, may be empty)
set -euo pipefail
# K8S_ADMIN, K8S_MARKS, k8sha_note, k8s_kubectl and the upgrade helpers come from k8s-lib.sh (Step.libs).

want=$K8SHA_KUBE_VERSION
have=$(k8s_installed kubelet)
case "$K8SHA_UPGRADE" in
  first | control-plane) master=yes ;;
  worker) master=no ;;
  *) k8sha_fail "K8SHA_UPGRADE must be first, control-plane or worker, not '$K8SHA_UPGRADE'" ;;
esac

if [ ! -f /etc/kubernetes/kubelet.conf ] || [ -z "$have" ]; then
  k8sha_log "$K8SHA_NODE has not joined the cluster yet: nothing to upgrade"
  k8sha_done
  exit 0
fi
if [ "$have" = "$want" ] && [ "$(k8s_installed kubeadm)" = "$want" ]; then
  # A run that stopped after the kubelet's upgrade but before the uncordon finishes here.
  [ "$master" = no ] || k8s_upgrade_uncordon "$K8SHA_NODE" "$want"
  k8sha_done
  exit 0
fi
reason=$(k8s_upgrade_refusal "$have" "$want")
[ -z "$reason" ] || k8sha_fail "node $K8SHA_NODE: $reason. Nothing was changed."
if [ "$master" = yes ]; then
  not_ready=$(k8s_nodes_not_ready) || k8sha_fail "cannot list the Nodes through $K8S_ADMIN"
  [ -z "$not_ready" ] ||
    k8sha_fail "Nodes not Ready: ${not_ready//$'\n'/ }. An upgrade starts only on a healthy cluster" \
      "(kubectl describe node); $K8SHA_NODE was not changed"
fi

# ---- kubeadm of the new version, from the same pinned release files as node preparation ---------
k8s_upgrade_install() { # COMPONENT
  local line
  line=$(awk -v c="$1" '$1 == c' <<<"$K8SHA_FILES")
  [ -n "$line" ] || k8sha_fail "no release file for $1 in K8SHA_FILES"
  # shellcheck disable=SC2086 # "component version sha256 url"
  k8s_install_release $line
}
k8s_upgrade_install kubeadm
ignore=()
[ -z "$K8SHA_IGNORE_PREFLIGHT" ] || ignore=(--ignore-preflight-errors "$K8SHA_IGNORE_PREFLIGHT")

# ---- the node's control plane (masters) or its kubelet configuration (workers) --------------------
if [ "$K8SHA_UPGRADE" = first ]; then
  # kubeadm pulls by tag: node preparation pinned the new images to their digests; again here in
  # case the image store lost them since.
  k8s_pin_images /etc/k8s-ha/image-digests /etc/containerd/certs.d /usr/local/bin/ctr
  k8sha_log "kubeadm upgrade apply v$want (from $have)"
  kubeadm upgrade apply "v$want" --yes "${ignore[@]}" </dev/null >&2 ||
    k8sha_fail "kubeadm upgrade apply v$want failed (output above); the cluster still runs $have where it" \
      "did not finish. Fix the cause and re-run: the step starts again where it stopped"
  k8sha_note "kubeadm upgrade apply v$want"
else
  kubeadm upgrade node "${ignore[@]}" </dev/null >&2 ||
    k8sha_fail "kubeadm upgrade node failed on $K8SHA_NODE (output above); fix the cause and re-run"
  k8sha_note "kubeadm upgrade node ($want)"
fi

# ---- the kubelet and kubectl, once the node is drained -------------------------------------------
[ "$master" = no ] || k8s_upgrade_drain "$K8SHA_NODE" "$want" $((300 * ${K8SHA_WAIT_SCALE:-1}))
k8s_upgrade_install kubelet
k8s_upgrade_install kubectl
systemctl daemon-reload
systemctl restart kubelet || k8sha_fail "kubelet $want failed to start (journalctl -u kubelet)"
k8sha_wait 120 "the kubelet's health endpoint" curl -fsS --max-time 5 http://127.0.0.1:10248/healthz
if [ "$master" = yes ]; then
  k8sha_wait 300 "the local apiserver https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz" \
    curl -fsS --max-time 5 --cacert /etc/kubernetes/pki/ca.crt "https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz"
  k8s_upgrade_uncordon "$K8SHA_NODE" "$want"
fi
k8sha_note "$K8SHA_NODE upgraded from Kubernetes $have to $want"

k8sha_done
