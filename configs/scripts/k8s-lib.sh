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

# Point each pinned image's tag at exactly its digest (artifacts.imageDigests): kubeadm, the
# kubelet and Calico's operator name images by tag, so the digest is pulled through the node's
# registry configuration and tagged; a tag already there costs nothing. A tag that a registry
# moved is put back. FILE: "ref digest" a line; CTR: the ctr command (with its address).
k8s_pin_images() { # FILE HOSTS_DIR CTR...
  local file=$1 hosts=$2 ref digest have pinned
  shift 2
  [ -s "$file" ] || return 0
  while read -r ref digest; do
    [ -n "$ref" ] || continue
    have=$("$@" -n k8s.io images ls "name==$ref" 2>/dev/null | awk 'NR == 2 { print $3 }')
    [ "$have" != "$digest" ] || continue
    pinned=${ref%:*}@$digest
    "$@" -n k8s.io images pull --hosts-dir "$hosts" --platform linux/amd64 "$pinned" >/dev/null ||
      k8sha_fail "cannot pull $pinned (artifacts.imageDigests) through $hosts: the registry or mirror" \
        "does not have that digest of $ref"
    "$@" -n k8s.io images tag --force "$pinned" "$ref" >/dev/null || k8sha_fail "ctr cannot tag $pinned as $ref"
    k8s_note "pinned $ref to $digest${have:+ (the registry had $have)}"
  done <"$file"
}
