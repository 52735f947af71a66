# shellcheck shell=bash
# Helpers shared by the Kubernetes steps (Step.libs: included once per bundle, after the step's
# environment). Functions and settings only.

K8S_ADMIN=/etc/kubernetes/admin.conf

# Record something this run did that is not a file (a join, a label, a drain) so that the step's
# summary does not claim "no changes".
k8s_note() {
  K8SHA_CHANGED+=("($1)")
  k8sha_log "$1"
}

k8s_kubectl() { kubectl --kubeconfig "$K8S_ADMIN" --request-timeout=20s "$@"; }
