#!/usr/bin/env bash
# Kubernetes node preparation (control-plane and worker nodes): kernel modules, sysctls, swap
# off, time sync, and kubeadm/kubelet/kubectl, containerd, runc, the CNI plugins and crictl from
# their release files, each checked against its pinned sha256 (the way Kubespray's download role
# does it), plus containerd's config and units. Every action is check-then-act: a second run
# changes nothing and downloads nothing.
# Env: K8SHA_NODE K8SHA_KUBE_VERSION K8SHA_SANDBOX_IMAGE K8SHA_KERNEL_MODULES K8SHA_ALLOW_CGROUP_V1
#      K8SHA_FILES: one release file a line, "component version sha256 url"
set -euo pipefail
# K8S_ADMIN, k8sha_note and k8s_kubectl come from k8s-lib.sh (Step.libs).

BIN=/usr/local/bin
export DEBIAN_FRONTEND=noninteractive

# ---- preflight: a host Kubernetes cannot run on is refused before anything on it changes --------
cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null) || cgroup_fs=missing
if [ "$cgroup_fs" != cgroup2fs ]; then
  # cgroup v1 (legacy or hybrid): a tmpfs with one mount per hierarchy.
  if [ "$cgroup_fs" != tmpfs ] || [ ! -d /sys/fs/cgroup/memory ] || [ ! -d /sys/fs/cgroup/pids ]; then
    k8sha_fail "node $K8SHA_NODE: /sys/fs/cgroup is $cgroup_fs, neither cgroup v2 nor a cgroup v1 hierarchy set"
  fi
  [ "${K8SHA_ALLOW_CGROUP_V1:-0}" = 1 ] ||
    k8sha_fail "node $K8SHA_NODE: /sys/fs/cgroup is cgroup v1, which the kubelet refuses from Kubernetes 1.35 on." \
      "Boot with the unified hierarchy (the default since Debian 11 and Ubuntu 21.10; on older setups drop" \
      "systemd.unified_cgroup_hierarchy=0 from the kernel command line), or set kubernetes.allowCgroupV1: true" \
      "in the stack (deprecated upstream), then re-run"
  k8sha_log "WARNING: node $K8SHA_NODE runs on cgroup v1 (kubernetes.allowCgroupV1), which Kubernetes deprecates"
fi
# A module counts when the kernel has its feature, loaded or built in (a built-in module without
# parameters has no /sys/module entry, and a container has no /lib/modules to ask modprobe).
k8s_module_present() {
  [ -d "/sys/module/$1" ] && return 0
  case $1 in
    overlay) grep -qw overlay /proc/filesystems ;;
    br_netfilter) [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ;;
    *) return 1 ;;
  esac
}
absent=()
for module in $K8SHA_KERNEL_MODULES; do
  k8s_module_present "$module" && continue
  command -v modprobe >/dev/null 2>&1 ||
    k8sha_fail "node $K8SHA_NODE: kernel module $module is not loaded and modprobe is missing: install kmod, then re-run"
  modprobe --dry-run "$module" >/dev/null 2>&1 || absent+=("$module")
done
[ "${#absent[@]}" -eq 0 ] ||
  k8sha_fail "node $K8SHA_NODE: the kernel has no ${absent[*]} module(s), which Kubernetes needs" \
    "(overlay: containerd's snapshotter; br_netfilter: pod traffic through iptables). Install the" \
    "kernel's module package (for a cloud kernel, the full linux-image package), reboot into it, re-run"

# ---- a Kubernetes version change on a node in the cluster is an upgrade ---------------------------
# kubeadm, the kubelet and kubectl of a joined node change only in its upgrade step (k8s-upgrade.sh),
# one node at a time in kubeadm's order; here they are left as they are. A change kubeadm cannot
# make (a downgrade, a skipped minor) is refused before anything on the node changes.
# docs/kubernetes.md "Upgrades".
K8S_DEFERRED=" "
have=$(k8s_installed kubelet)
if [ -f /etc/kubernetes/kubelet.conf ] && [ -n "$have" ] && [ "$have" != "$K8SHA_KUBE_VERSION" ]; then
  reason=$(k8s_upgrade_refusal "$have" "$K8SHA_KUBE_VERSION")
  [ -z "$reason" ] || k8sha_fail "node $K8SHA_NODE: $reason. Nothing was changed."
  K8S_DEFERRED=" kubeadm kubelet kubectl "
  k8sha_log "node $K8SHA_NODE runs Kubernetes $have: its upgrade step installs $K8SHA_KUBE_VERSION"
fi

# ---- OS tools, time sync -------------------------------------------------------------------------
# conntrack: kubeadm's preflight requires it; the rest come from the release files below.
k8sha_apt_install ca-certificates curl conntrack
# An NTP daemon already installed is kept (installing systemd-timesyncd would remove it);
# otherwise systemd-timesyncd. Certificates and etcd leases need the clocks in step.
time_sync=systemd-timesyncd
for candidate in chrony ntpsec openntpd; do
  if [ -z "$(k8sha_missing_packages "$candidate")" ]; then
    time_sync=$candidate
    break
  fi
done
[ "$time_sync" != systemd-timesyncd ] || k8sha_apt_install systemd-timesyncd
k8sha_service "$time_sync" restart

# ---- release files: download (cached by sha256), verify, install ---------------------------------
while read -r component version sha url; do
  [ -n "$component" ] || continue
  [[ "$K8S_DEFERRED" != *" $component "* ]] || continue
  k8s_install_release "$component" "$version" "$sha" "$url"
done <<<"$K8SHA_FILES"

# ---- files: modules, sysctls, units, containerd config and registries, crictl ---------------------
k8sha_install_files

# ---- kernel modules -------------------------------------------------------------------------------
for module in $K8SHA_KERNEL_MODULES; do  # the preflight made sure each one loads
  k8s_module_present "$module" && continue
  modprobe "$module" || k8sha_fail "modprobe $module failed: the kernel needs $module for Kubernetes"
  k8sha_note "loaded kernel module $module"
done

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
  k8sha_note "applied /etc/sysctl.d/99-k8s-ha-kubernetes.conf"
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
  k8sha_note "turned swap off"
fi
if grep -Eq '^[[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]]' /etc/fstab 2>/dev/null; then
  sed -i.k8s-ha.bak -E \
    's|^([[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# disabled by k8s-ha (kubelet needs swap off): \1|' \
    /etc/fstab
  k8sha_note "commented out swap in /etc/fstab (backup /etc/fstab.k8s-ha.bak)"
fi

# ---- containerd: validate, (re)start when its config, unit or binaries changed ---------------------
"$BIN/containerd" --config /etc/containerd/config.toml config dump >/dev/null ||
  k8sha_fail "containerd rejected /etc/containerd/config.toml"
k8sha_service containerd restart /etc/containerd/config.toml /etc/systemd/system/containerd.service \
  release:containerd release:runc
k8sha_wait 30 "containerd's socket /run/containerd/containerd.sock" test -S /run/containerd/containerd.sock

# kubelet: enabled, started by kubeadm init/join (until then it has no configuration); a new
# binary of the same version (a private rebuild) restarts a running kubelet.
if ! systemctl is-enabled --quiet kubelet; then
  systemctl enable kubelet >/dev/null 2>&1 || k8sha_fail "cannot enable kubelet"
  k8sha_note "enabled kubelet"
fi
if k8sha_changed release:kubelet '/etc/systemd/system/kubelet.service*' && systemctl is-active --quiet kubelet; then
  systemctl restart kubelet || k8sha_fail "kubelet failed to restart (journalctl -u kubelet)"
  k8sha_note "restarted kubelet"
fi

# ---- verify --------------------------------------------------------------------------------------
"$BIN/crictl" --runtime-endpoint unix:///run/containerd/containerd.sock info >/dev/null ||
  k8sha_fail "containerd's CRI plugin does not answer (journalctl -u containerd)"
k8s_pin_images /etc/k8s-ha/image-digests /etc/containerd/certs.d "$BIN/ctr"
k8sha_log "node $K8SHA_NODE ready for kubeadm: kubeadm $(k8s_installed kubeadm)," \
  "containerd $(k8s_installed containerd), runc $(k8s_installed runc), sandbox image $K8SHA_SANDBOX_IMAGE"

k8sha_done
