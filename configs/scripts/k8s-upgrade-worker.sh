#!/usr/bin/env bash
# A worker's drain before its upgrade (K8SHA_PHASE=drain) and its return after (K8SHA_PHASE=
# uncordon), run on the first control-plane node, which holds admin.conf: a worker has no
# credential that may evict pods. Nothing happens while the cluster does not exist yet, for a
# worker that has not joined, or for one whose kubelet already runs K8SHA_KUBE_VERSION.
# Env: K8SHA_WORKER K8SHA_KUBE_VERSION K8SHA_PHASE
set -euo pipefail
# K8S_ADMIN, k8sha_note, k8s_kubectl and the upgrade helpers come from k8s-lib.sh (Step.libs).

want=$K8SHA_KUBE_VERSION
if [ ! -f "$K8S_ADMIN" ]; then
  k8sha_log "no cluster yet: nothing to upgrade on $K8SHA_WORKER"
  k8sha_done
  exit 0
fi
have=$(k8s_node_version "$K8SHA_WORKER")
case "$K8SHA_PHASE" in
  drain)
    if [ -z "$have" ] || [ "$have" = "$want" ]; then
      k8sha_log "Node $K8SHA_WORKER ${have:+runs $have}${have:-is not registered}: nothing to drain"
    else
      reason=$(k8s_upgrade_refusal "$have" "$want")
      [ -z "$reason" ] || k8sha_fail "Node $K8SHA_WORKER: $reason. Nothing was changed."
      not_ready=$(k8s_nodes_not_ready) || k8sha_fail "cannot list the Nodes through $K8S_ADMIN"
      [ -z "$not_ready" ] ||
        k8sha_fail "Nodes not Ready: ${not_ready//$'\n'/ }. An upgrade goes on only on a healthy cluster" \
          "(kubectl describe node); $K8SHA_WORKER was not drained"
      k8s_upgrade_drain "$K8SHA_WORKER" "$want" $((300 * ${K8SHA_WAIT_SCALE:-1}))
    fi ;;
  uncordon) [ -z "$have" ] || k8s_upgrade_uncordon "$K8SHA_WORKER" "$want" ;;
  *) k8sha_fail "K8SHA_PHASE must be drain or uncordon, not '$K8SHA_PHASE'" ;;
esac

k8sha_done
