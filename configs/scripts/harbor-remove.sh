#!/usr/bin/env bash
# Harbor removal (the harbor step's delete): stop Harbor (`docker compose down`: containers and
# networks go, nothing else), disable and remove harbor.service and its files. Kept on purpose:
# the data volume (registry blobs, database, Redis, job logs, Harbor's secret keys), the installer
# directory with its loaded images, /etc/harbor and Docker itself, so a Harbor added back finds
# its content. Wipe them by hand to delete Harbor's data (docs/harbor.md). Safe to re-run.
# Env: as harbor-install.sh.
set -euo pipefail

HARBOR_UNIT=harbor.service
HARBOR_UNIT_FILE=/etc/systemd/system/$HARBOR_UNIT
HARBOR_DROPIN=/etc/systemd/system/docker.service.d/k8s-ha-harbor-data.conf

harbor_note() {
  K8SHA_CHANGED+=("($1)")
  k8sha_log "$1"
}

if systemctl is-enabled --quiet "$HARBOR_UNIT" 2>/dev/null; then
  systemctl disable "$HARBOR_UNIT" >/dev/null 2>&1 || k8sha_fail "cannot disable $HARBOR_UNIT"
  harbor_note "disabled $HARBOR_UNIT"
fi
if systemctl is-active --quiet "$HARBOR_UNIT"; then
  systemctl stop "$HARBOR_UNIT" || k8sha_fail "$HARBOR_UNIT failed to stop (journalctl -u $HARBOR_UNIT)"
  harbor_note "stopped $HARBOR_UNIT"
fi

# Harbor's containers restart with Docker (restart: always): take the project down even when the
# unit was not active.
if command -v docker >/dev/null 2>&1 &&
  [ -n "$(docker ps -aq --filter label=com.docker.compose.project=harbor)" ]; then
  if [ ! -x "$K8SHA_HARBOR_COMPOSE" ] || [ ! -f "$K8SHA_HARBOR_DIR/docker-compose.yml" ]; then
    k8sha_fail "Harbor's containers exist but $K8SHA_HARBOR_DIR/docker-compose.yml or $K8SHA_HARBOR_COMPOSE" \
      "is missing: take them down by hand (docker ps -a --filter label=com.docker.compose.project=harbor)"
  fi
  "$K8SHA_HARBOR_COMPOSE" "$K8SHA_HARBOR_DIR" down >&2 || k8sha_fail "docker compose down failed in $K8SHA_HARBOR_DIR"
  harbor_note "took Harbor's containers down"
fi

removed=no
for file in "$HARBOR_UNIT_FILE" "$HARBOR_DROPIN" "$K8SHA_HARBOR_COMPOSE"; do
  if [ -e "$file" ]; then
    rm -f -- "$file"
    K8SHA_CHANGED+=("$file")
    removed=yes
  fi
done
if [ "$removed" = yes ]; then
  systemctl daemon-reload
fi

k8sha_log "kept $K8SHA_HARBOR_DATA (registry, database, secrets), $K8SHA_HARBOR_DIR and /etc/harbor:" \
  "remove them by hand to wipe Harbor's data"
k8sha_done
