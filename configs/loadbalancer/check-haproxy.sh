#!/bin/bash
# keepalived's health check: HAProxy accepts a connection on its stats listener. One process per run
# (no pidof, no timeout wrapper: keepalived kills a run that outlives the script's `timeout`), so the
# check stays cheap on slow hosts.
# Usage: check-haproxy NODE_IP STATS_PORT
exec 3<>"/dev/tcp/$1/$2"
