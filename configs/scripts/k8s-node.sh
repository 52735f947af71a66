#!/usr/bin/env bash
# Kubernetes node preparation (control-plane and worker nodes): kernel modules, sysctls, swap
# off, time sync, containerd (configured), the Kubernetes apt repository and pinned
# kubeadm/kubelet/kubectl. Every action is check-then-act: a second run changes nothing.
# Env: K8SHA_NODE K8SHA_KUBE_VERSION K8SHA_KUBE_PACKAGE_VERSION K8SHA_KUBE_KEY_URL
#      K8SHA_KUBE_KEYRING K8SHA_CONTAINERD_VERSION K8SHA_SANDBOX_IMAGE
set -euo pipefail
# K8S_ADMIN, k8s_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

K8S_STATE=/var/lib/k8s-ha
K8S_PACKAGES=(kubeadm kubelet kubectl)
export DEBIAN_FRONTEND=noninteractive

# A change that is not a file (a module loaded, swap turned off): counted like a changed file,
# so "no changes" at the end really means nothing was done.

# The installed version of a package, empty when it is not installed (dpkg-query then fails:
# never in a pipeline, which pipefail would turn into a failed step).
k8s_installed_version() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null) || return 0
  if [ "${status%% *}" = installed ]; then printf '%s\n' "${status#* }"; fi
}

k8s_apt() {
  apt-get -y -q -o Dpkg::Options::=--force-confold --no-install-recommends "$@" </dev/null >&2
}

# ---- refuse a version change of installed Kubernetes packages -----------------------------------
# Changing kubeadm/kubelet under a running cluster is an upgrade (kubeadm upgrade apply/node,
# one node at a time): it is never done implicitly by a re-run. docs/kubernetes.md "Upgrades".
for pkg in kubeadm kubelet; do
  have=$(k8s_installed_version "$pkg")
  if [ -n "$have" ] && [ "$have" != "$K8SHA_KUBE_PACKAGE_VERSION" ]; then
    k8sha_fail "$pkg $have is installed but the stack wants $K8SHA_KUBE_PACKAGE_VERSION:" \
      "upgrade with kubeadm (docs/kubernetes.md, Upgrades), then re-run"
  fi
done

# ---- tools, time sync ----------------------------------------------------------------------------
k8sha_apt_install ca-certificates curl
# An NTP daemon already installed is kept (installing systemd-timesyncd would remove it);
# otherwise systemd-timesyncd. Certificates and etcd leases need the clocks in step.
time_sync=systemd-timesyncd
for candidate in chrony ntpsec openntpd; do
  if [ -n "$(k8s_installed_version "$candidate")" ]; then
    time_sync=$candidate
    break
  fi
done
[ "$time_sync" != systemd-timesyncd ] || k8sha_apt_install systemd-timesyncd
k8sha_service "$time_sync" restart

# ---- the Kubernetes repository's key: fetched only when missing ----------------------------------
# Fetched before the source list is installed, so apt never sees the repository without its key.
if [ ! -s "$K8SHA_KUBE_KEYRING" ]; then
  tmp_key=$(mktemp)
  curl -fsSL --retry 3 --connect-timeout 10 --max-time 60 -o "$tmp_key" "$K8SHA_KUBE_KEY_URL" ||
    k8sha_fail "cannot fetch the Kubernetes package key $K8SHA_KUBE_KEY_URL (mirrors.kubernetesPackages)"
  grep -q 'BEGIN PGP PUBLIC KEY BLOCK' "$tmp_key" ||
    k8sha_fail "$K8SHA_KUBE_KEY_URL is not an ASCII-armoured OpenPGP key"
  install -D -m 0644 -- "$tmp_key" "$K8SHA_KUBE_KEYRING"
  rm -f -- "$tmp_key"
  K8SHA_CHANGED+=("$K8SHA_KUBE_KEYRING")
  k8sha_log "installed the Kubernetes repository key $K8SHA_KUBE_KEYRING"
fi

# ---- containerd: Debian's package; the configured version when the repository offers it --------
containerd_matches() { case "$1" in "$K8SHA_CONTAINERD_VERSION" | "$K8SHA_CONTAINERD_VERSION"[~-]*) return 0 ;; esac; return 1; }
containerd_offered() {
  # awk reads everything (no early exit): with pipefail an early exit could fail the pipeline.
  apt-cache madison containerd | awk -v want="$K8SHA_CONTAINERD_VERSION" '
    !found && ($3 == want || index($3, want "~") == 1 || index($3, want "-") == 1) { found = $3 }
    END { print found }'
}
containerd_have=$(k8s_installed_version containerd)
containerd_checked=$K8S_STATE/containerd-version-looked-up
if [ -z "$containerd_have" ]; then
  apt-get update -q >&2 || k8sha_fail "apt-get update failed: check mirrors.osPackages and the host's route out"
  offered=$(containerd_offered)
  if [ -n "$offered" ]; then
    k8s_apt install "containerd=$offered" || k8sha_fail "could not install containerd=$offered"
    apt-mark hold containerd >/dev/null
  else
    k8sha_log "WARNING: the package repository offers no containerd $K8SHA_CONTAINERD_VERSION; installing its own version"
    k8s_apt install containerd || k8sha_fail "could not install containerd"
    mkdir -p "$K8S_STATE"
    printf '%s\n' "$K8SHA_CONTAINERD_VERSION" >"$containerd_checked"
  fi
  k8s_note "installed containerd $(k8s_installed_version containerd)"
elif ! containerd_matches "$containerd_have" &&
  [ "$(cat "$containerd_checked" 2>/dev/null)" != "$K8SHA_CONTAINERD_VERSION" ]; then
  # Installed at another version: switch only if the package lists already on the host offer the
  # wanted one (no apt-get update: a host without a route out must be able to re-run this step).
  offered=$(containerd_offered)
  if [ -n "$offered" ]; then
    k8s_apt install --allow-downgrades "containerd=$offered" || k8sha_fail "could not install containerd=$offered"
    apt-mark hold containerd >/dev/null
    k8s_note "switched containerd from $containerd_have to $offered"
  fi
  mkdir -p "$K8S_STATE"
  printf '%s\n' "$K8SHA_CONTAINERD_VERSION" >"$containerd_checked"
  k8s_note "looked up containerd $K8SHA_CONTAINERD_VERSION in the host's package lists"
fi
containerd_have=$(k8s_installed_version containerd)
containerd_matches "$containerd_have" ||
  k8sha_log "note: containerd $containerd_have runs; versions.containerd $K8SHA_CONTAINERD_VERSION is not offered by the repository"

# ---- files: modules, sysctls, containerd config and registries, crictl, apt source ---------------
k8sha_install_files

# ---- kernel modules -------------------------------------------------------------------------------
while read -r module; do
  case "$module" in '' | '#'*) continue ;; esac
  [ -d "/sys/module/$module" ] && continue
  if ! command -v modprobe >/dev/null 2>&1; then
    k8sha_log "WARNING: kernel module $module is not loaded and modprobe is missing (install kmod);" \
      "it loads at the next boot from /etc/modules-load.d/k8s-ha-kubernetes.conf"
    continue
  fi
  modprobe "$module" || k8sha_fail "modprobe $module failed: the kernel needs $module for Kubernetes"
  k8s_note "loaded kernel module $module"
done </etc/modules-load.d/k8s-ha-kubernetes.conf

# ---- sysctls ----------------------------------------------------------------------------------------
sysctl_wrong() {
  local key value
  while IFS='= ' read -r key value; do
    case "$key" in '' | '#'*) continue ;; esac
    [ -e "/proc/sys/${key//.//}" ] || continue
    [ "$(sysctl -n "$key")" = "$value" ] || return 0
  done </etc/sysctl.d/99-k8s-ha-kubernetes.conf
  return 1
}
if k8sha_changed /etc/sysctl.d/99-k8s-ha-kubernetes.conf || sysctl_wrong; then
  # -e: the net.bridge keys exist only once br_netfilter is loaded; checked just below.
  sysctl -q -e -p /etc/sysctl.d/99-k8s-ha-kubernetes.conf >/dev/null ||
    k8sha_fail "sysctl could not apply /etc/sysctl.d/99-k8s-ha-kubernetes.conf"
  k8s_note "applied /etc/sysctl.d/99-k8s-ha-kubernetes.conf"
fi
[ "$(sysctl -n net.ipv4.ip_forward)" = 1 ] || k8sha_fail "net.ipv4.ip_forward is not 1"
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  [ "$(sysctl -n net.bridge.bridge-nf-call-iptables)" = 1 ] ||
    k8sha_fail "net.bridge.bridge-nf-call-iptables is not 1"
else
  k8sha_log "WARNING: br_netfilter is not loaded: bridged pod traffic bypasses iptables until it is"
fi

# ---- swap off, now and after reboots ---------------------------------------------------------------
if [ -n "$(swapon --show --noheadings 2>/dev/null)" ]; then
  swapoff -a || k8sha_fail "swapoff -a failed"
  k8s_note "turned swap off"
fi
if grep -Eq '^[[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]' /etc/fstab 2>/dev/null; then
  sed -i.k8s-ha.bak -E \
    's|^([[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# disabled by k8s-ha (kubelet needs swap off): \1|' \
    /etc/fstab
  k8s_note "commented out swap in /etc/fstab (backup /etc/fstab.k8s-ha.bak)"
fi

# ---- containerd: validate, (re)start only when its config changed ----------------------------------
containerd --config /etc/containerd/config.toml config dump >/dev/null ||
  k8sha_fail "containerd rejected /etc/containerd/config.toml"
k8sha_service containerd restart /etc/containerd/config.toml
k8sha_wait 30 "containerd's socket /run/containerd/containerd.sock" test -S /run/containerd/containerd.sock

# ---- kubeadm, kubelet, kubectl: the exact version, held ---------------------------------------------
missing=()
for pkg in "${K8S_PACKAGES[@]}"; do
  [ "$(k8s_installed_version "$pkg")" = "$K8SHA_KUBE_PACKAGE_VERSION" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q >&2 || k8sha_fail "apt-get update failed: check mirrors.kubernetesPackages and the route out"
  offered=$(apt-cache madison kubeadm | awk '{print $3}')
  if ! grep -qxF "$K8SHA_KUBE_PACKAGE_VERSION" <<<"$offered"; then
    k8sha_fail "the Kubernetes repository offers no kubeadm $K8SHA_KUBE_PACKAGE_VERSION; it offers:" \
      "$(grep -F "$K8SHA_KUBE_VERSION-" <<<"$offered" | tr '\n' ' ')"
  fi
  pins=()
  for pkg in "${missing[@]}"; do pins+=("$pkg=$K8SHA_KUBE_PACKAGE_VERSION"); done
  k8s_apt install --allow-change-held-packages "${pins[@]}" kubernetes-cni ||
    k8sha_fail "could not install ${pins[*]}"
  k8s_note "installed ${pins[*]}"
fi
held=$(apt-mark showhold)
for pkg in "${K8S_PACKAGES[@]}"; do
  if ! grep -qx "$pkg" <<<"$held"; then
    apt-mark hold "$pkg" >/dev/null
    k8s_note "held $pkg at $K8SHA_KUBE_PACKAGE_VERSION"
  fi
done

# kubelet: enabled, started by kubeadm init/join (until then it has no configuration).
if ! systemctl is-enabled --quiet kubelet; then
  systemctl enable kubelet >/dev/null 2>&1 || k8sha_fail "cannot enable kubelet"
  k8s_note "enabled kubelet"
fi

# ---- verify --------------------------------------------------------------------------------------
crictl --runtime-endpoint unix:///run/containerd/containerd.sock info >/dev/null ||
  k8sha_fail "containerd's CRI plugin does not answer (journalctl -u containerd)"
[ "$(k8s_installed_version kubeadm)" = "$K8SHA_KUBE_PACKAGE_VERSION" ] ||
  k8sha_fail "kubeadm is not $K8SHA_KUBE_PACKAGE_VERSION after installation"
k8sha_log "node $K8SHA_NODE ready for kubeadm: kubeadm $K8SHA_KUBE_PACKAGE_VERSION," \
  "containerd $containerd_have, sandbox image $K8SHA_SANDBOX_IMAGE"

k8sha_done
