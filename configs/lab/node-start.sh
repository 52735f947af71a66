#!/bin/sh
# Runs inside a lab node container just before its init (lxc.hook.start), in the node's own mount
# and cgroup namespaces: mounts every cgroup hierarchy of the machine afresh, read-write, so the
# node's systemd, containerd and runc manage their own subtree. Each hierarchy is mounted as itself
# (this machine's cpu and cpuacct are separate hierarchies; LXC's own cgroup mounting would link
# both to a "cpu,cpuacct" directory that does not exist here).
set -eu
mount -t tmpfs -o rw,nosuid,nodev,noexec,mode=0755 cgroup /sys/fs/cgroup
while IFS=: read -r _id controllers _path; do
  opts=rw,nosuid,nodev,noexec
  case $controllers in
    "") mkdir -p /sys/fs/cgroup/unified
        mount -t cgroup2 -o "$opts" cgroup2 /sys/fs/cgroup/unified ;;
    name=*) dir=${controllers#name=}
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup -o "$opts,none,$controllers" cgroup "/sys/fs/cgroup/$dir" ;;
    *) mkdir -p "/sys/fs/cgroup/$controllers"
       mount -t cgroup -o "$opts,$controllers" cgroup "/sys/fs/cgroup/$controllers"
       case $controllers in *,*)  # co-mounted controllers: a link per name, as systemd makes them
         for c in $(echo "$controllers" | tr , ' '); do ln -sfn "$controllers" "/sys/fs/cgroup/$c"; done ;;
       esac ;;
  esac
done </proc/self/cgroup
mount -o remount,ro,nosuid,nodev,noexec,mode=0755 /sys/fs/cgroup
