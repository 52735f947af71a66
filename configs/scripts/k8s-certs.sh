#!/usr/bin/env bash
# A master's certificates: kubeadm's renewed when they are due, the control plane restarted onto
# new certificate files, and every expiry reported for the stack's `certificates` output. The
# program chains this step one master at a time, so that the VIP always has apiservers behind it.
#
# kubeadm issues its certificates with the stack's validity (pki.certValidityHours) after the
# program issued the apiserver's etcd client certificate, so they never expire before it; the
# program's certificates are replaced inside the renewal window, and that replacement reaches here
# (K8SHA_ETCD_CLIENT_SHA256). kubeadm's certificates are renewed when one of them would expire
# before the etcd client certificate now installed, or inside the window (K8SHA_RENEWAL_WINDOW_H).
# Env: K8SHA_NODE K8SHA_NODE_IP K8SHA_API_PORT K8SHA_KUBE_VERSION K8SHA_RENEWAL_WINDOW_H
#      K8SHA_ETCD_CLIENT_SHA256
set -euo pipefail
# K8S_ADMIN, k8s_restart_static_pods come from k8s-lib.sh (Step.libs).

PKI=/etc/kubernetes/pki
KUBEADM_CERTS=(apiserver apiserver-kubelet-client front-proxy-client)
KUBEADM_CONFS=(admin.conf super-admin.conf controller-manager.conf scheduler.conf)
[ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] ||
  k8sha_fail "$K8SHA_NODE has no control plane: its init or join step has not run"
etcd_client=$PKI/apiserver-etcd-client.crt
[ "$(sha256sum <"$etcd_client" | cut -d' ' -f1)" = "$K8SHA_ETCD_CLIENT_SHA256" ] ||
  k8sha_fail "$etcd_client is not the certificate the program issued: the master's init or join step" \
    "installs it first; re-run \`up\`"

# The notAfter of a PEM certificate (FILE, or stdin without one: `openssl x509` takes no "-"), in
# seconds since the epoch.
not_after() { # [FILE]
  local end
  if [ $# -gt 0 ]; then end=$(openssl x509 -noout -enddate -in "$1" 2>/dev/null) || return 1
  else end=$(openssl x509 -noout -enddate 2>/dev/null) || return 1
  fi
  date -d "${end#notAfter=}" +%s
}
conf_cert() { # KUBECONFIG: its client certificate, PEM
  sed -n 's/^ *client-certificate-data: *//p' "$1" | head -n 1 | base64 -d
}
expiry_of() { # NAME: NAME's notAfter ("" when this master does not have it)
  case $1 in
    *.conf) [ -f "/etc/kubernetes/$1" ] && conf_cert "/etc/kubernetes/$1" | not_after ;;
    kubelet-client) not_after /var/lib/kubelet/pki/kubelet-client-current.pem ;;
    *) [ -f "$PKI/$1.crt" ] && not_after "$PKI/$1.crt" ;;
  esac || true
}

renew_before=$(not_after "$etcd_client") || k8sha_fail "cannot read $etcd_client"
window_end=$(($(date +%s) + K8SHA_RENEWAL_WINDOW_H * 3600))
[ "$window_end" -gt "$renew_before" ] || window_end=$renew_before
due=()
for name in "${KUBEADM_CERTS[@]}" "${KUBEADM_CONFS[@]}"; do
  end=$(expiry_of "$name")
  [ -z "$end" ] || [ "$end" -ge "$window_end" ] || due+=("$name")
done

restart=()
if [ "${#due[@]}" -gt 0 ]; then
  for name in "${KUBEADM_CERTS[@]}" "${KUBEADM_CONFS[@]}"; do
    [ -n "$(expiry_of "$name")" ] || continue
    kubeadm certs renew "$name" </dev/null >&2 ||
      k8sha_fail "kubeadm certs renew $name failed (output above); the control plane still runs on its" \
        "old certificates, which stay valid until they expire; fix the cause and re-run"
  done
  k8sha_note "renewed kubeadm's certificates (due: ${due[*]})"
  restart=(kube-apiserver kube-controller-manager kube-scheduler)
else
  # The apiserver reads its etcd client certificate at start: one installed after it started
  # (a renewal of the program's) needs a restart.
  started=$(crictl inspect "$(crictl ps --name kube-apiserver -q | head -n 1)" 2>/dev/null |
    sed -n 's/^ *"startedAt": *"\([^"]*\)".*/\1/p' | head -n 1)
  if [ -n "$started" ] && [ "$(date -d "$started" +%s)" -lt "$(stat -c %Y "$etcd_client")" ]; then
    restart=(kube-apiserver)
  fi
fi
if [ "${#restart[@]}" -gt 0 ]; then
  k8s_restart_static_pods "${restart[@]}"
  k8sha_wait 300 "the local apiserver https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz" \
    curl -fsS --max-time 5 --cacert "$PKI/ca.crt" "https://$K8SHA_NODE_IP:$K8SHA_API_PORT/readyz"
  k8sha_note "restarted ${restart[*]} on their new certificates"
fi

# The report the program reads: "k8s-ha certificate NAME NOT_AFTER" a line, UTC.
for name in "${KUBEADM_CERTS[@]}" "${KUBEADM_CONFS[@]}" kubelet-client; do
  end=$(expiry_of "$name")
  [ -z "$end" ] || printf 'k8s-ha certificate %s %s\n' "$name" "$(date -u -d "@$end" +%Y-%m-%dT%H:%M:%SZ)"
done

k8sha_done
