#!/usr/bin/env bash
# Delete of a worker's membership step, run on the first control-plane node (which holds
# admin.conf): cordon, drain (bounded; PodDisruptionBudgets respected until the timeout, or until
# no other node could take the pods) and delete the worker's Node. Afterwards the worker's own
# delete runs `kubeadm reset -f`.
# Env: K8SHA_WORKER
set -euo pipefail
# K8S_ADMIN, k8sha_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

if [ ! -f "$K8S_ADMIN" ]; then
  k8sha_log "WARNING: no $K8S_ADMIN on this node (already reset?): Node $K8SHA_WORKER not deleted"
  k8sha_done
  exit 0
fi
if ! node=$(k8s_kubectl get node "$K8SHA_WORKER" --ignore-not-found -o name); then
  k8sha_log "WARNING: the API is unreachable: Node $K8SHA_WORKER not deleted (kubectl delete node $K8SHA_WORKER)"
  k8sha_done
  exit 0
fi
# Nodes other than the worker that can take its pods: not cordoned, no NoSchedule taint.
k8s_schedulable_elsewhere() {
  k8s_kubectl get nodes --no-headers \
    -o custom-columns=NAME:.metadata.name,OFF:.spec.unschedulable,TAINTS:.spec.taints[*].effect |
    awk -v self="$K8SHA_WORKER" '$1 != self && $2 != "true" && $3 !~ /NoSchedule/ { print $1 }'
}

if [ -n "$node" ]; then
  # Drained in short rounds for up to 300 s, PodDisruptionBudgets respected, so that a drain that
  # cannot finish is noticed: when no other node can take the pods (every worker is leaving, as on
  # `destroy`), the budgets cannot be met by waiting, and the Node is deleted at once.
  k8s_kubectl cordon "$K8SHA_WORKER" >&2
  deadline=$((SECONDS + 300))
  until k8s_kubectl drain "$K8SHA_WORKER" --ignore-daemonsets --delete-emptydir-data --force --timeout=20s >&2; do
    if [ -z "$(k8s_schedulable_elsewhere)" ]; then
      k8sha_log "WARNING: no other node can take the pods of $K8SHA_WORKER (every worker is leaving?):" \
        "deleting the Node without waiting for its PodDisruptionBudgets"
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      k8sha_log "WARNING: drain of $K8SHA_WORKER did not finish within 300 s (a PodDisruptionBudget?);" \
        "deleting the Node anyway"
      break
    fi
  done
  k8s_kubectl delete node "$K8SHA_WORKER" --wait=true --timeout=60s >&2 ||
    k8sha_fail "could not delete Node $K8SHA_WORKER"
  k8sha_note "drained and deleted Node $K8SHA_WORKER"
else
  k8sha_log "Node $K8SHA_WORKER is already gone"
fi

k8sha_done
