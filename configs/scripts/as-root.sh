# Run the step bundle arriving on stdin as root (sudo for a non-root user), passing the action.
if [ "$(id -u)" -eq 0 ]; then exec bash -s -- "$K8SHA_ACTION"; else exec sudo -n bash -s -- "$K8SHA_ACTION"; fi
