#!/usr/bin/env bash
# Join a control-plane node (K8SHA_ROLE=control-plane) or a worker (K8SHA_ROLE=worker) with a
# complete JoinConfiguration rendered by the program: bootstrap token, the VIP as discovery
# endpoint, the CA's public-key hash (and, for a control-plane node, the certificate key).
# Joins only when /etc/kubernetes/kubelet.conf is absent; every run verifies the result.
# Env: K8SHA_NODE K8SHA_NODE_IP K8SHA_API_PORT K8SHA_ENDPOINT K8SHA_ROLE
set -euo pipefail
# K8S_ADMIN, k8sha_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

K8S_CONFIG=/etc/kubernetes/k8s-ha/kubeadm-join.yaml
K8S_PKI=/etc/kubernetes/pki
K8S_KUBELET_CONF=/etc/kubernetes/kubelet.conf

case "$K8SHA_ROLE" in
  control-plane | worker) ;;
  *) k8sha_fail "K8SHA_ROLE must be control-plane or worker, not '$K8SHA_ROLE'" ;;
esac

joined_before=no
[ ! -f "$K8S_KUBELET_CONF" ] || joined_before=yes
k8sha_install_files
kubeadm config validate --config "$K8S_CONFIG" >/dev/null || k8sha_fail "kubeadm rejected $K8S_CONFIG"

if [ "$joined_before" = no ]; then
  # -k: only a reachability probe, nothing is sent; discovery itself pins the CA's hash.
  k8sha_wait 180 "the API server behind the VIP (https://$K8SHA_ENDPOINT/readyz)" \
    curl -fsSk --max-time 5 "https://$K8SHA_ENDPOINT/readyz"
  k8sha_log "kubeadm join as $K8SHA_ROLE through $K8SHA_ENDPOINT"
  kubeadm join --config "$K8S_CONFIG" </dev/null >&2 ||
    k8sha_fail "kubeadm join failed (output above). Fix the cause, run 'kubeadm reset -f' on $K8SHA_NODE, re-run"
  k8sha_note "joined the cluster as $K8SHA_ROLE"
  # A control-plane join writes the certificates the first master last uploaded (kubeadm-certs),
  # which can be older than the program's (an etcd client certificate renewed since): the
  # program's files again; the k8s-certs step restarts the apiserver onto them.
  k8sha_install_files
fi

if [ "$K8SHA_ROLE" = control-plane ]; then
  # A renewed etcd client certificate reaches the running apiserver through the k8s-certs step,
  # which restarts the masters one at a time.
  k8sha_wait 300 "the local apiserver https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz" \
    curl -fsS --max-time 5 --cacert "$K8S_PKI/ca.crt" "https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz"
  labels=$(kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s get node "$K8SHA_NODE" \
    -o jsonpath='{.metadata.labels}') || k8sha_fail "cannot read Node $K8SHA_NODE"
  [[ "$labels" == *'"node-role.kubernetes.io/control-plane"'* ]] ||
    k8sha_fail "Node $K8SHA_NODE is not marked control-plane: the join stopped half-way;" \
      "run 'kubeadm reset -f' on $K8SHA_NODE and re-run"
else
  k8sha_wait 120 "the kubelet's health endpoint" curl -fsS --max-time 5 http://127.0.0.1:10248/healthz
fi
# A kubelet may read its own Node (Node authorizer): proves the TLS bootstrap and registration.
# The kubelet registers its Node just after it reports healthy; on a fast host this step asks first.
k8s_node_registered() {
  kubectl --kubeconfig "$K8S_KUBELET_CONF" --request-timeout=20s get node "$K8SHA_NODE" -o name >/dev/null 2>&1
}
deadline=$((SECONDS + 60 * ${K8SHA_WAIT_SCALE:-1}))
until k8s_node_registered; do
  [ "$SECONDS" -lt "$deadline" ] ||
    k8sha_fail "Node $K8SHA_NODE is not registered although $K8S_KUBELET_CONF exists (journalctl -u kubelet)"
  sleep 0.5
done

k8sha_done
