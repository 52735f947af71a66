#!/usr/bin/env bash
# etcd member removal: the delete of the member step, run on the member being removed before its
# VM is deleted. Takes it out of the cluster (`member remove`), stops it, and moves its data aside
# (never deletes it). Refuses when the remaining members could not keep quorum. Safe to re-run.
# Env: as etcd-member.sh.
set -euo pipefail

# The etcd_* helpers come from etcd-lib.sh (Step.libs).

NAME=$K8SHA_ETCD_NAME
DATA_DIR=$K8SHA_ETCD_DATA_DIR


# The member list as this member sees it (it is still a member while this runs), else as the others
# do. Never a list from any endpoint: a member removed a moment ago by another host's step still
# answers with the list it had, and that stale list made a quorum check count it as a dead member.
etcd_current_members() {
  etcd_member_list "$K8SHA_ETCD_CLIENT_URL" || etcd_member_list "$(etcd_others)"
}

# This member's line in a `member list`: by peer URL, or by name.
etcd_find_self() {
  awk -F', ' -v peer="$K8SHA_ETCD_PEER_URL" -v name="$NAME" '$4 == peer || ($3 != "" && $3 == name)' <<<"$1"
}

# etcd_healthy_others LIST: the other members that pass a health check, one `member list` line each.
etcd_healthy_others() {
  local line urls url healthy
  urls=$(awk -F', ' '$5 != "" { printf "%s%s", sep, $5; sep = "," }' <<<"$(etcd_without_self "$1")")
  [ -n "$urls" ] || return 0
  healthy=$(etcd_healthy_urls "$urls")
  while IFS= read -r line; do
    for url in $healthy; do
      case ",$(etcd_field 5 "$line")," in *",$url,"*)
        printf '%s\n' "$line"
        break
        ;;
      esac
    done
  done <<<"$(etcd_without_self "$1")"
}

# etcd_without_self LIST: every member but this one.
etcd_without_self() {
  awk -F', ' -v peer="$K8SHA_ETCD_PEER_URL" -v name="$NAME" 'NF && !($4 == peer || ($3 != "" && $3 == name))' <<<"$1"
}

# etcd_check_quorum LIST: refuse when the members left after this removal would lack quorum.
etcd_check_quorum() {
  local members remaining need healthy
  members=$(grep -c . <<<"$1")
  remaining=$((members - 1))
  need=$((remaining / 2 + 1))
  healthy=$(etcd_healthy_others "$1" | grep -c . || true)
  if [ "$healthy" -lt "$need" ]; then
    k8sha_fail "refusing to remove $NAME: the $remaining members left would have $healthy healthy, and" \
      "quorum needs $need. Bring the unhealthy members back first (etcdctl endpoint health --cluster)," \
      "or remove a dead member instead."
  fi
  k8sha_log "$healthy of the $remaining remaining members are healthy (quorum $need)"
}

# Runs under the membership lock (one membership change at a time, see etcd-member.sh).
etcd_remove_self() {
  local list self id status me leader target removed deadline
  list=$(etcd_current_members) || k8sha_fail "the cluster stopped answering"
  self=$(etcd_find_self "$list")
  if [ -z "$self" ]; then
    k8sha_log "$NAME was removed meanwhile"
    return 0
  fi
  if [ "$(grep -c . <<<"$list")" -eq 1 ]; then
    k8sha_log "$NAME is the last member now: the cluster ends with it"
    return 0
  fi
  etcd_check_quorum "$list"
  id=$(etcd_field 1 "$self")
  # Removing the leader forces an election; handing leadership over first avoids that pause.
  status=$(etcd_ctl "$K8SHA_ETCD_CLIENT_URL" endpoint status -w json 2>/dev/null || true)
  me=$(grep -o '"member_id":[0-9]*' <<<"$status" | cut -d: -f2 || true)
  leader=$(grep -o '"leader":[0-9]*' <<<"$status" | cut -d: -f2 || true)
  if [ -n "$me" ] && [ "$me" = "$leader" ]; then
    target=$(etcd_healthy_others "$list")
    target=${target%%$'\n'*}
    if [ -n "$target" ] && etcd_ctl "$K8SHA_ETCD_CLIENT_URL" move-leader "$(etcd_field 1 "$target")" >/dev/null 2>&1; then
      k8sha_log "moved leadership from $NAME to $(etcd_field 3 "$target")"
    fi
  fi
  # etcd's own guard answers "unhealthy cluster" until its leader has been connected to the other
  # members for 5 s (e.g. right after one restarted or leadership moved): that passes, so retry.
  deadline=$((SECONDS + ${K8SHA_ETCD_JOIN_TIMEOUT:-180}))
  until removed=$(etcd_ctl "$(etcd_others)" member remove "$id" 2>&1); do
    list=$(etcd_member_list "$(etcd_others),$K8SHA_ETCD_CLIENT_URL" || true)
    if [ -n "$list" ] && [ -z "$(etcd_find_self "$list")" ]; then
      break # removed after all (the answer was lost)
    fi
    case $removed in *"unhealthy cluster"* | *"not enough started members"*) ;;
      *) k8sha_fail "etcd refused to remove $NAME ($id): $(tail -n 1 <<<"$removed")" ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      k8sha_fail "etcd refused to remove $NAME ($id) for ${K8SHA_ETCD_JOIN_TIMEOUT:-180}s: $(tail -n 1 <<<"$removed")"
    fi
    k8sha_log "etcd is not ready to remove $NAME yet ($(tail -n 1 <<<"$removed")); retrying"
    sleep 2
  done
  k8sha_log "removed $NAME ($id) from the cluster"
}

# Stop and disable the member and its backups; move its data aside; forget the new/existing decision.
etcd_retire() {
  local aside
  systemctl disable --now etcd-backup.timer >/dev/null 2>&1 || true
  if systemctl is-enabled --quiet etcd.service 2>/dev/null || systemctl is-active --quiet etcd.service; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
    k8sha_log "stopped and disabled etcd"
  fi
  if systemctl is-active --quiet etcd.service; then
    k8sha_fail "etcd is still running on $NAME after systemctl disable --now etcd; not touching its data"
  fi
  if [ -d "$DATA_DIR/member" ]; then
    aside=$DATA_DIR.removed-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -m 0700 "$aside"
    mv "$DATA_DIR/member" "$aside/"
    k8sha_log "moved the data of $NAME to $aside (delete it when no longer needed)"
    K8SHA_CHANGED+=("$aside")
  fi
  if [ -f "$K8SHA_ETCD_STATE_FILE" ]; then
    rm -f "$K8SHA_ETCD_STATE_FILE"
    K8SHA_CHANGED+=("$K8SHA_ETCD_STATE_FILE")
  fi
}

# ---- the step ----
if ! list=$(etcd_current_members); then
  case $(systemctl is-active etcd.service 2>/dev/null || true) in active | activating)
    k8sha_fail "no etcd member answers, yet etcd runs on $NAME: refusing to stop it, since it may be" \
      "needed for quorum. Fix the cluster and retry, or stop it by hand if the cluster is gone." ;;
  esac
  k8sha_log "WARNING: no etcd member answers and etcd is not running on $NAME, so it cannot be" \
    "removed from the cluster here. If the cluster still exists, remove it by hand:" \
    "etcdctl --endpoints=$(etcd_others) member remove ID (ID from 'member list')"
elif [ -z "$(etcd_find_self "$list")" ]; then
  k8sha_log "$NAME is not a member of the cluster (already removed)"
elif [ "$(grep -c . <<<"$list")" -eq 1 ]; then
  k8sha_log "$NAME is the last member: the cluster ends with it"
else
  # The quorum check runs under the lock only: outside it, another host's removal can land between
  # reading the list and checking the others' health, and its member would count as a dead one.
  etcd_locked membership etcd_remove_self
fi
etcd_retire
k8sha_done
