# shellcheck shell=bash
# etcd helpers shared by the etcd member, remove and health steps (Step.libs: included once per
# bundle, after the step's environment). Functions and settings only.
# Every etcdctl call authenticates as the healthcheck client, with short timeouts so that a dead
# member costs seconds, never minutes. ETCDCTL_* variables would clash with the flags: dropped.
unset "${!ETCDCTL_@}"
ETCDCTL=$K8SHA_ETCD_BIN_DIR/etcdctl
ETCD_TLS=(--cacert="$K8SHA_ETCD_PKI/ca.crt" --cert="$K8SHA_ETCD_PKI/healthcheck-client.crt"
  --key="$K8SHA_ETCD_PKI/healthcheck-client.key")

# etcd_ctl ENDPOINTS ARGS...: one etcdctl call against comma-separated ENDPOINTS (the client uses
# whichever answers). ETCD_TIMEOUT (default 5s) bounds the call once connected.
etcd_ctl() {
  local targets=$1
  shift
  "$ETCDCTL" "${ETCD_TLS[@]}" --endpoints="$targets" --dial-timeout=2s --command-timeout="${ETCD_TIMEOUT:-5s}" "$@"
}

# etcd_member_list ENDPOINTS: `member list` from any of them. One member per line, fields
# separated by ", ": ID (hex), status, name, peer URLs, client URLs, is-learner. A member that has
# never run has no client URLs (and, when added at run time, no name yet).
etcd_member_list() { ETCD_TIMEOUT=3s etcd_ctl "$1" member list 2>/dev/null; }

# etcd_field N LINE: field N of a `member list` line.
etcd_field() { awk -F', ' -v n="$1" '{ print $n }' <<<"$2"; }

# etcd_healthy_urls ENDPOINTS: those of them that pass a health check (which needs quorum).
etcd_healthy_urls() {
  local out
  out=$(ETCD_TIMEOUT=3s etcd_ctl "$1" endpoint health 2>&1 || true)
  awk '$2 == "is" && $3 == "healthy:" { print $1 }' <<<"$out"
}

# etcd_healthy ENDPOINTS: true when at least one of them is healthy, i.e. the cluster has quorum.
etcd_healthy() { [ -n "$(etcd_healthy_urls "$1")" ]; }

# etcd_locked NAME COMMAND...: run COMMAND in a subshell while holding the etcd lock
# k8s-ha/lock/NAME, so that hosts running this step at the same time take turns (membership
# changes and restarts one member at a time). The lock lives in etcd, so it needs quorum. It is
# released when COMMAND ends or fails, by its lease (15 s) if this host dies, and in any case
# after 15 minutes (`timeout`).
etcd_locked() {
  local lock=k8s-ha/lock/$1
  shift
  (
    held=$(mktemp "$K8SHA_STAGE/etcd-lock.XXXXXX")
    # The lock client talks to the members that pass a health check now: one that has just left
    # the cluster (another host's removal, as on `destroy`) answers "raft: stopped" and the client
    # does not fail over. A client that stops before it holds the lock is started again (5 tries).
    etcd_lock_client() {
      local targets
      targets=$(etcd_healthy_urls "$K8SHA_ETCD_ENDPOINTS" | paste -sd, -)
      timeout -s KILL 900 "$ETCDCTL" "${ETCD_TLS[@]}" --endpoints="${targets:-$K8SHA_ETCD_ENDPOINTS}" \
        --dial-timeout=2s lock --ttl=15 "$lock" >"$held" 2>"$held.err" &
      holder=$!
    }
    etcd_lock_client
    trap 'etcd_unlock "$holder" "$held"' EXIT
    deadline=$((SECONDS + ${K8SHA_ETCD_LOCK_TIMEOUT:-300}))
    waited=0 tries=1
    until [ -s "$held" ]; do # etcdctl prints the lock's key once it holds it
      if [ "$waited" -eq 10 ]; then
        k8sha_log "waiting for the etcd lock $lock (another member's step holds it)"
      fi
      waited=$((waited + 1))
      if ! kill -0 "$holder" 2>/dev/null && [ ! -s "$held" ]; then
        if [ "$tries" -ge 5 ]; then
          k8sha_fail "could not take the etcd lock $lock: $(tail -n 2 "$held.err")"
        fi
        k8sha_log "the etcd lock client stopped ($(tail -n 1 "$held.err" | cut -c1-160)); trying again"
        tries=$((tries + 1))
        sleep 1
        etcd_lock_client
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        k8sha_fail "waited ${K8SHA_ETCD_LOCK_TIMEOUT:-300}s for the etcd lock $lock; its holder is" \
          "another member's step (see: etcdctl get --prefix $lock)"
      fi
      sleep 0.2
    done
    "$@"
  )
}

# etcd_unlock HOLDER FILE: stop the `etcdctl lock` (TERM, after 3 s KILL: a client whose members
# all went away ignores TERM) and delete the lock key itself, so the next holder need not wait for
# the lease to run out when the member this client talked to has just left the cluster.
etcd_unlock() {
  local holder=$1 key child i
  key=$(head -n 1 "$2" 2>/dev/null || true)
  child=$(ps -o pid= --ppid "$holder" 2>/dev/null || true)
  kill "$holder" 2>/dev/null || true
  for ((i = 0; i < 15; i++)); do
    kill -0 "$holder" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$holder" 2>/dev/null && [ -n "$child" ]; then
    kill -KILL "$child" 2>/dev/null || true
  fi
  wait "$holder" 2>/dev/null || true
  if [ -n "$key" ]; then
    ETCD_TIMEOUT=3s etcd_ctl "$K8SHA_ETCD_ENDPOINTS" del "$key" >/dev/null 2>&1 || true
  fi
}

# The other members' client URLs, comma-separated.
etcd_others() {
  local endpoint endpoints out=()
  IFS=, read -ra endpoints <<<"$K8SHA_ETCD_ENDPOINTS"
  for endpoint in "${endpoints[@]}"; do
    [ "$endpoint" = "$K8SHA_ETCD_CLIENT_URL" ] || out+=("$endpoint")
  done
  (IFS=,; printf '%s' "${out[*]}")
}
