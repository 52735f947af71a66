#!/bin/bash
# keepalived's health check: HAProxy is alive and its stats listener accepts a connection.
# Usage: check-haproxy NODE_IP STATS_PORT
set -eu
pidof haproxy >/dev/null
timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2"
