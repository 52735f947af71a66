# The remote command of every step: run the bundle from stdin as root (sudo for a non-root user).
if [ "$(id -u)" -eq 0 ]; then exec bash -s; else exec sudo -n bash -s; fi
