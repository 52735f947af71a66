#!/usr/bin/env bash
# Harbor: Docker Engine and Compose from the OS mirror, Harbor's offline installer (checked against
# mirrors.harborInstallerSha256) unpacked once per version, harbor.yml and the TLS files, Harbor's
# `prepare` only when one of them changed, and harbor.service so Harbor comes back after a reboot.
# Ends when Harbor's API reports every component healthy over HTTPS, verified with the trust the
# nodes use. Safe to re-run: a second run changes nothing and restarts nothing. See docs/harbor.md.
# Env: K8SHA_HARBOR_VERSION K8SHA_HARBOR_URL K8SHA_HARBOR_SHA256 K8SHA_HARBOR_DIR K8SHA_HARBOR_HOST
#      K8SHA_HARBOR_CONFIG K8SHA_HARBOR_PKI K8SHA_HARBOR_DATA K8SHA_HARBOR_COMPOSE K8SHA_HARBOR_WAIT_S
set -euo pipefail

HARBOR_DIR=$K8SHA_HARBOR_DIR
HARBOR_UNIT=harbor.service
HARBOR_INSTALLED=$HARBOR_DIR/.k8s-ha-installer.sha256 # the installer this directory came from
HARBOR_IMAGES=$HARBOR_DIR/.k8s-ha-images              # the images `docker load` reported
HARBOR_PREPARED=$HARBOR_DIR/.k8s-ha-prepared          # checksum of what `prepare` last ran on
HARBOR_DOWNLOAD=$(dirname -- "$HARBOR_DIR")/.k8s-ha-harbor-download
HARBOR_PROJECT_LABEL=com.docker.compose.project=harbor

# A change that is not a file (images loaded, prepare run, Harbor started): counted like a
# changed file, so "no changes" at the end really means nothing was done.
harbor_note() {
  K8SHA_CHANGED+=("($1)")
  k8sha_log "$1"
}

# The installer runs as root and brings every image Harbor runs: never unchecked.
[ -n "$K8SHA_HARBOR_SHA256" ] ||
  k8sha_fail "mirrors.harborInstallerSha256 is not set: refusing to install Harbor from an unchecked" \
    "download. Set it to the sha256 of $K8SHA_HARBOR_URL (docs/harbor.md, 'Installer checksum')"

# ---- the data disk -------------------------------------------------------------------------------
# cloud-init mounts a VM's data disk with nofail. If it is in fstab but not mounted, Harbor must not
# start on an empty directory of the root disk. A host without such an entry keeps data on its disk.
if awk -v dir="$K8SHA_HARBOR_DATA" '$1 !~ /^#/ && $2 == dir { found = 1 } END { exit !found }' /etc/fstab &&
  ! mountpoint -q "$K8SHA_HARBOR_DATA"; then
  k8sha_fail "$K8SHA_HARBOR_DATA is in /etc/fstab but not mounted: is the data disk attached? (lsblk, journalctl -b)"
fi

# ---- Docker Engine and Compose -------------------------------------------------------------------
# Debian 12 ships Docker 20.10 as docker.io and Compose 1.29 as the standalone docker-compose; it has
# no Compose v2 plugin. A host that already has Docker keeps it (docker.io conflicts with docker-ce).
k8sha_apt_install ca-certificates curl
command -v docker >/dev/null 2>&1 || k8sha_apt_install docker.io
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  k8sha_apt_install docker-compose
fi
k8sha_install_files
k8sha_service docker restart

# ---- the offline installer: downloaded, checked and unpacked once per version ---------------------
harbor_unpack() {
  local archive=$HARBOR_DOWNLOAD/installer.tgz unpacked=$HARBOR_DOWNLOAD/unpacked got file
  rm -rf -- "$HARBOR_DOWNLOAD"
  mkdir -p -- "$unpacked"
  k8sha_log "downloading Harbor $K8SHA_HARBOR_VERSION from $K8SHA_HARBOR_URL"
  curl -fsSL --retry 3 --connect-timeout 15 -o "$archive" "$K8SHA_HARBOR_URL" ||
    k8sha_fail "cannot download $K8SHA_HARBOR_URL (mirrors.harborInstaller)"
  got=$(sha256sum -- "$archive" | cut -d' ' -f1)
  [ "$got" = "$K8SHA_HARBOR_SHA256" ] ||
    k8sha_fail "checksum mismatch for $K8SHA_HARBOR_URL: expected $K8SHA_HARBOR_SHA256" \
      "(mirrors.harborInstallerSha256), got $got"
  tar -xzf "$archive" -C "$unpacked" --strip-components=1 --no-same-owner ||
    k8sha_fail "$K8SHA_HARBOR_URL is not a readable tar.gz"
  for file in prepare "harbor.v$K8SHA_HARBOR_VERSION.tar.gz"; do
    [ -f "$unpacked/$file" ] ||
      k8sha_fail "$K8SHA_HARBOR_URL has no $file: is it Harbor $K8SHA_HARBOR_VERSION's offline installer?"
  done
  printf '%s\n' "$K8SHA_HARBOR_SHA256" >"$unpacked/.k8s-ha-installer.sha256"
  rm -rf -- "$HARBOR_DIR"
  mv -- "$unpacked" "$HARBOR_DIR"
  rm -rf -- "$HARBOR_DOWNLOAD"
  harbor_note "unpacked Harbor $K8SHA_HARBOR_VERSION's offline installer into $HARBOR_DIR"
}

if [ "$(cat -- "$HARBOR_INSTALLED" 2>/dev/null)" != "$K8SHA_HARBOR_SHA256" ]; then
  harbor_unpack
fi

# ---- Harbor's images: loaded when any image the archive holds is missing ---------------------------
harbor_images_loaded() {
  local image
  [ -s "$HARBOR_IMAGES" ] || return 1
  while read -r image; do
    docker image inspect "$image" >/dev/null 2>&1 || return 1
  done <"$HARBOR_IMAGES"
}

if ! harbor_images_loaded; then
  archive=$HARBOR_DIR/harbor.v$K8SHA_HARBOR_VERSION.tar.gz
  k8sha_log "loading Harbor's images from $archive"
  docker load -i "$archive" >"$K8SHA_STAGE/docker-load.out" || k8sha_fail "docker load -i $archive failed"
  sed -n 's/^Loaded image: //p' "$K8SHA_STAGE/docker-load.out" >"$HARBOR_IMAGES"
  [ -s "$HARBOR_IMAGES" ] || k8sha_fail "docker load reported no image from $archive"
  harbor_note "loaded $(wc -l <"$HARBOR_IMAGES") Harbor images"
fi

# ---- prepare: only when harbor.yml, the TLS files or the images differ from its last run ----------
# prepare writes new internal secrets on every run, so it never runs without a reason.
stamp=$(cat -- "$K8SHA_HARBOR_CONFIG" "$K8SHA_HARBOR_PKI/tls.crt" "$K8SHA_HARBOR_PKI/tls.key" "$HARBOR_IMAGES" |
  sha256sum | cut -d' ' -f1)
prepared=no
if [ ! -f "$HARBOR_DIR/docker-compose.yml" ] || [ "$(cat -- "$HARBOR_PREPARED" 2>/dev/null)" != "$stamp" ]; then
  install -m 0600 -o root -g root -- "$K8SHA_HARBOR_CONFIG" "$HARBOR_DIR/harbor.yml"
  k8sha_log "running Harbor's prepare in $HARBOR_DIR"
  (cd -- "$HARBOR_DIR" && ./prepare) >&2 || k8sha_fail "Harbor's prepare rejected $K8SHA_HARBOR_CONFIG (output above)"
  [ -f "$HARBOR_DIR/docker-compose.yml" ] || k8sha_fail "Harbor's prepare wrote no $HARBOR_DIR/docker-compose.yml"
  printf '%s\n' "$stamp" >"$HARBOR_PREPARED"
  prepared=yes
  harbor_note "prepared Harbor's configuration in $HARBOR_DIR"
fi

# ---- harbor.service ------------------------------------------------------------------------------
# True when Harbor's compose project has no container, or one that is not running.
harbor_containers_down() {
  local all running
  all=$(docker ps -aq --filter "label=$HARBOR_PROJECT_LABEL" | wc -l)
  running=$(docker ps -q --filter "label=$HARBOR_PROJECT_LABEL" --filter status=running | wc -l)
  [ "$all" -eq 0 ] || [ "$running" -lt "$all" ]
}

systemctl enable "$HARBOR_UNIT" >/dev/null 2>&1 || k8sha_fail "cannot enable $HARBOR_UNIT"
if ! systemctl is-active --quiet "$HARBOR_UNIT"; then
  systemctl start "$HARBOR_UNIT" || k8sha_fail "$HARBOR_UNIT failed to start (journalctl -u $HARBOR_UNIT)"
  harbor_note "started $HARBOR_UNIT"
elif [ "$prepared" = yes ] || k8sha_changed "/etc/systemd/system/$HARBOR_UNIT"; then
  systemctl restart "$HARBOR_UNIT" || k8sha_fail "$HARBOR_UNIT failed to restart (journalctl -u $HARBOR_UNIT)"
  harbor_note "restarted $HARBOR_UNIT: its configuration changed"
elif harbor_containers_down; then
  systemctl reload "$HARBOR_UNIT" || k8sha_fail "$HARBOR_UNIT failed to bring Harbor's containers back"
  harbor_note "brought Harbor's stopped containers back ($HARBOR_UNIT reload)"
fi

# ---- ready: every component healthy, over HTTPS, verified as the nodes verify it -------------------
# The request goes to this host (127.0.0.1) but TLS checks the name the nodes use.
harbor_healthy() {
  local body status
  body=$(curl -fsS --max-time 10 --cacert "$K8SHA_HARBOR_PKI/ca.crt" --connect-to "::127.0.0.1:443" \
    "https://$K8SHA_HARBOR_HOST/api/v2.0/health") || return 1
  status=$(awk 'match($0, /"status" *: *"[a-z]+"/) {
      s = substr($0, RSTART, RLENGTH); sub(/^"status" *: *"/, "", s); sub(/"$/, "", s); print s; exit
    }' <<<"$body")
  [ "$status" = healthy ] || {
    printf 'Harbor reports %s: %s\n' "${status:-no status}" "$body" >&2
    return 1
  }
}

deadline=$((SECONDS + K8SHA_HARBOR_WAIT_S))
until harbor_healthy 2>"$K8SHA_STAGE/health.err"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    k8sha_fail "Harbor is not healthy at https://$K8SHA_HARBOR_HOST/api/v2.0/health after" \
      "${K8SHA_HARBOR_WAIT_S}s: $(tr '\n' ' ' <"$K8SHA_STAGE/health.err")(docker ps -a; /var/log/harbor)"
  fi
  sleep 2
done

k8sha_done
