#!/usr/bin/env bash
# Undo of the readiness step: forget k8s-ha's markers; the machine itself is left alone.
set -euo pipefail
rm -f /var/lib/k8s-ha/node.json
k8sha_log "released $K8SHA_NODE"
