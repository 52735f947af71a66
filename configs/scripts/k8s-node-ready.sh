#!/usr/bin/env bash
# A worker's membership, run on the first control-plane node (which holds admin.conf): wait until
# the worker's Node is registered and Ready, then reconcile the labels the control plane owns
# (node-role, pool, the pool's labels). Labels removed from the stack are removed from the Node:
# the keys this step set are remembered in the annotation k8s-ha.io/managed-labels.
# Ready needs the CNI add-on: this step runs after the add-ons are applied.
# Env: K8SHA_WORKER K8SHA_LABELS ("key=value ...")
set -euo pipefail
# K8S_ADMIN, k8sha_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

K8S_ANNOTATION=k8s-ha.io/managed-labels

k8s_node_ready() {
  [ "$(k8s_kubectl get node "$K8SHA_WORKER" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

[ -f "$K8S_ADMIN" ] || k8sha_fail "$K8S_ADMIN is missing: this step runs on an initialised control-plane node"
k8sha_wait 300 "Node $K8SHA_WORKER to register" k8s_kubectl get node "$K8SHA_WORKER"
deadline=$((SECONDS + 300))
until k8s_node_ready; do
  [ "$SECONDS" -lt "$deadline" ] ||
    k8sha_fail "Node $K8SHA_WORKER is not Ready after 300 s: usually the CNI add-on is missing or failing" \
      "on it (kubectl get pods -A -o wide --field-selector spec.nodeName=$K8SHA_WORKER)"
  sleep 2
done

read -r -a desired <<<"$K8SHA_LABELS"
# shellcheck disable=SC2016 # a kubectl go-template, not a shell expansion
current=$(k8s_kubectl get node "$K8SHA_WORKER" \
  -o go-template='{{range $k, $v := .metadata.labels}}{{$k}}={{$v}}{{"\n"}}{{end}}')
previous=$(k8s_kubectl get node "$K8SHA_WORKER" -o jsonpath="{.metadata.annotations.${K8S_ANNOTATION//./\\.}}")

keys=()
missing=()
for label in "${desired[@]}"; do
  keys+=("${label%%=*}")
  grep -qxF -- "$label" <<<"$current" || missing+=("$label")
done
stale=()
for key in ${previous//,/ }; do
  [[ " ${keys[*]} " == *" $key "* ]] || stale+=("$key-")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${#stale[@]}" -gt 0 ]; then
  k8s_kubectl label node "$K8SHA_WORKER" --overwrite "${missing[@]}" "${stale[@]}" >/dev/null ||
    k8sha_fail "cannot label Node $K8SHA_WORKER with ${missing[*]} ${stale[*]}"
  k8sha_note "labels of $K8SHA_WORKER: set ${missing[*]:-nothing}, removed ${stale[*]:-nothing}"
fi
managed=$(IFS=,; printf '%s' "${keys[*]}")
if [ "$previous" != "$managed" ]; then
  k8s_kubectl annotate node "$K8SHA_WORKER" --overwrite "$K8S_ANNOTATION=$managed" >/dev/null ||
    k8sha_fail "cannot annotate Node $K8SHA_WORKER"
  k8sha_note "recorded the labels k8s-ha manages on $K8SHA_WORKER"
fi

k8sha_done
