# shellcheck shell=bash
# Helpers shared by the Kubernetes steps (Step.libs: included once per bundle, after the step's
# environment). Functions and settings only.

K8S_ADMIN=/etc/kubernetes/admin.conf

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
    k8sha_note "pinned $ref to $digest${have:+ (the registry had $have)}"
  done <"$file"
}

# ---- what is installed, and rolling upgrades (k8s-node.sh, k8s-upgrade.sh, k8s-upgrade-worker.sh) ----
K8S_MARKS=/var/lib/k8s-ha/installed     # component -> "version sha256" of what is installed
# shellcheck disable=SC2034 # read by the steps that include this library
K8S_DOWNLOADS=/var/cache/k8s-ha/downloads
K8S_UPGRADING=k8s-ha.io/upgrading      # on a Node cordoned for its upgrade: the version it goes to

# The installed version of a release component ("" when none).
k8s_installed() { local mark; mark=$(cat "$K8S_MARKS/$1" 2>/dev/null) || return 0; printf '%s\n' "${mark%% *}"; }

k8s_install_bin() { # SRC DEST
  install -D -m 0755 -o root -g root -- "$1" "$2.k8sha-new"
  mv -f -- "$2.k8sha-new" "$2"
}

k8s_release_present() { # COMPONENT: the installed files are still there
  case $1 in
    kubeadm | kubelet | kubectl | crictl) [ -x "/usr/local/bin/$1" ] ;;
    containerd) [ -x /usr/local/bin/containerd ] && [ -x /usr/local/bin/containerd-shim-runc-v2 ] ;;
    runc) [ -x /usr/local/sbin/runc ] ;;
    cni-plugins) [ -x /opt/cni/bin/bridge ] && [ -x /opt/cni/bin/host-local ] && [ -x /opt/cni/bin/loopback ] ;;
    *) k8sha_fail "unknown release component $1" ;;
  esac
}

# Fetch one release file, check it against its sha256 and install what it carries, unless that
# version is installed and its files are still there (node preparation and the upgrade steps).
k8s_install_release() { # COMPONENT VERSION SHA256 URL
  local component=$1 version=$2 sha=$3 url=$4 file unpacked binary
  if [ "$(cat "$K8S_MARKS/$component" 2>/dev/null)" = "$version $sha" ] && k8s_release_present "$component"; then
    return 0
  fi
  file=$K8S_DOWNLOADS/$sha/${url##*/}
  k8sha_fetch "$url" "$sha" "$file" "$component $version"
  unpacked=$K8SHA_STAGE/release-$component
  mkdir -p "$unpacked"
  case $component in
    kubeadm | kubelet | kubectl) k8s_install_bin "$file" "/usr/local/bin/$component" ;;
    runc) k8s_install_bin "$file" /usr/local/sbin/runc ;;
    crictl)
      tar -xzf "$file" -C "$unpacked" --no-same-owner crictl || k8sha_fail "$url has no crictl"
      k8s_install_bin "$unpacked/crictl" /usr/local/bin/crictl ;;
    containerd)
      tar -xzf "$file" -C "$unpacked" --no-same-owner || k8sha_fail "$url is not a readable tar.gz"
      [ -x "$unpacked/bin/containerd" ] || k8sha_fail "$url has no bin/containerd"
      for binary in "$unpacked"/bin/*; do k8s_install_bin "$binary" "/usr/local/bin/${binary##*/}"; done ;;
    cni-plugins)
      mkdir -p /opt/cni/bin
      tar -xzf "$file" -C /opt/cni/bin --no-same-owner || k8sha_fail "$url is not a readable tar.gz" ;;
  esac
  k8s_release_present "$component" || k8sha_fail "$component $version from $url did not install its files"
  mkdir -p "$K8S_MARKS"
  printf '%s %s\n' "$version" "$sha" >"$K8S_MARKS/$component"
  K8SHA_CHANGED+=("release:$component")
  k8sha_note "installed $component $version"
}

# Stop the named static pods' containers; the kubelet starts each again from its manifest (how a
# control-plane component is made to read new certificates or a restored etcd).
k8s_restart_static_pods() { # COMPONENT...
  local component ids
  for component in "$@"; do
    mapfile -t ids < <(crictl ps --name "$component" -q) # /etc/crictl.yaml names containerd's socket
    [ "${#ids[@]}" -eq 0 ] || crictl stop "${ids[@]}" >/dev/null
  done
}

# Why moving a node's Kubernetes from HAVE to WANT (x.y.z) is not an upgrade kubeadm supports;
# nothing when it is. The same rule as versions.upgrade_problem in the program.
k8s_upgrade_refusal() { # HAVE WANT
  local have_major have_minor have_patch want_major want_minor want_patch
  IFS=. read -r have_major have_minor have_patch <<<"$1"
  IFS=. read -r want_major want_minor want_patch <<<"$2"
  if [ "$want_major" != "$have_major" ]; then
    echo "Kubernetes $1 cannot become $2: kubeadm upgrades within one major version"
  elif [ "$want_minor" -lt "$have_minor" ] || { [ "$want_minor" -eq "$have_minor" ] && [ "$want_patch" -lt "$have_patch" ]; }; then
    echo "Kubernetes $2 is older than the $1 the cluster runs: kubeadm does not downgrade; put versions.kubernetes back to $1"
  elif [ "$want_minor" -gt $((have_minor + 1)) ]; then
    echo "Kubernetes $1 to $2 skips 1.$((have_minor + 1)): kubeadm upgrades one minor at a time; set versions.kubernetes to a 1.$((have_minor + 1)) release first"
  fi
}

# Nodes that are not Ready, one a line (an upgrade starts only on a healthy cluster).
k8s_nodes_not_ready() {
  k8s_kubectl get nodes --no-headers \
    -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status' |
    awk '$2 != "True" { print $1 }'
}

# The version NODE's kubelet reports, without the v ("" when NODE is not registered).
k8s_node_version() {
  local version
  version=$(k8s_kubectl get node "$1" --ignore-not-found -o jsonpath='{.status.nodeInfo.kubeletVersion}') ||
    k8sha_fail "cannot read Node $1 through $K8S_ADMIN"
  printf '%s\n' "${version#v}"
}

# NODE is Ready and its kubelet reports WANT (a query: never fails the step).
k8s_node_ready_on() { # NODE WANT
  local state
  state=$(k8s_kubectl get node "$1" \
    -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) ||
    return 1
  [ "$state" = "v$2 True" ]
}

# Cordon NODE and drain it, PodDisruptionBudgets respected, for up to LIMIT seconds; marked with
# K8S_UPGRADING so that k8s_upgrade_uncordon (also after a failed run) gives it back.
k8s_upgrade_drain() { # NODE WANT LIMIT
  local deadline=$((SECONDS + $3))
  k8s_kubectl annotate node "$1" --overwrite "$K8S_UPGRADING=$2" >/dev/null || k8sha_fail "cannot annotate Node $1"
  k8s_kubectl cordon "$1" >&2 || k8sha_fail "cannot cordon Node $1"
  until k8s_kubectl drain "$1" --ignore-daemonsets --delete-emptydir-data --timeout=20s >&2; do
    [ "$SECONDS" -lt "$deadline" ] ||
      k8sha_fail "Node $1 did not drain within $3 s (a PodDisruptionBudget that cannot be met, or a pod" \
        "without a controller): it stays cordoned; fix the cause and re-run"
  done
  k8sha_note "drained Node $1 for Kubernetes $2"
}

# After NODE's upgrade: wait until it is Ready on WANT, then uncordon it (only if the upgrade cordoned it).
k8s_upgrade_uncordon() { # NODE WANT
  local marked
  marked=$(k8s_kubectl get node "$1" --ignore-not-found -o jsonpath="{.metadata.annotations.${K8S_UPGRADING//./\\.}}") ||
    k8sha_fail "cannot read Node $1"
  [ -n "$marked" ] || return 0
  k8sha_wait 300 "Node $1 to be Ready on kubelet v$2" k8s_node_ready_on "$1" "$2"
  k8s_kubectl uncordon "$1" >&2 || k8sha_fail "cannot uncordon Node $1"
  k8s_kubectl annotate node "$1" "$K8S_UPGRADING-" >/dev/null || k8sha_fail "cannot annotate Node $1"
  k8sha_note "Node $1 runs Kubernetes $2 and takes pods again"
}
