#!/usr/bin/env bash
# Load balancer: HAProxy in front of the apiservers and keepalived holding the VIP.
# Env: K8SHA_NODE_IP K8SHA_STATS_PORT K8SHA_VIP
set -euo pipefail

k8sha_apt_install haproxy keepalived psmisc
k8sha_install_files

if k8sha_changed /etc/sysctl.d/99-k8s-ha-loadbalancer.conf ||
  [ "$(sysctl -n net.ipv4.ip_nonlocal_bind)" != 1 ]; then
  sysctl -q -p /etc/sysctl.d/99-k8s-ha-loadbalancer.conf
fi

haproxy -c -q -f /etc/haproxy/haproxy.cfg || k8sha_fail "HAProxy rejected /etc/haproxy/haproxy.cfg"
mkdir -p /run/haproxy
k8sha_service haproxy reload /etc/haproxy/haproxy.cfg /etc/haproxy/kubernetes-ca.crt
if k8sha_changed /etc/systemd/system/haproxy.service.d/k8s-ha.conf; then k8sha_renice haproxy haproxy; fi
k8sha_wait 20 "HAProxy's stats listener on $K8SHA_NODE_IP:$K8SHA_STATS_PORT" \
  /usr/local/libexec/k8s-ha/check-haproxy "$K8SHA_NODE_IP" "$K8SHA_STATS_PORT"

keepalived -t -f /etc/keepalived/keepalived.conf || k8sha_fail "keepalived rejected /etc/keepalived/keepalived.conf"
k8sha_service keepalived reload /etc/keepalived/keepalived.conf /usr/local/libexec/k8s-ha/check-haproxy
if k8sha_changed /etc/systemd/system/keepalived.service.d/k8s-ha.conf; then k8sha_renice keepalived keepalived; fi

k8sha_done
