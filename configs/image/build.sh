#!/usr/bin/env bash
# Build a bootable Debian cloud image offline-capable (Debian packages only), without loop devices
# or mounts: debootstrap into a directory, `mkfs.ext4 -d` and `mkfs.vfat` + mtools into partition
# images, syslinux (BIOS) on the FAT boot partition, then qcow2. Run as root (debootstrap chroots).
#
# Usage: build.sh OUT.qcow2 SUITE MIRROR ROOT_MIB "pkg,pkg,..." [ROOTFS.tar]
# With ROOTFS.tar, the same configured root file system is also written as a tar: the root of the
# lab's node containers (one recipe for VMs and system containers; the kernel in it goes unused).
# Layout: p1 FAT /boot-loader (syslinux, kernel, initrd; active), p2 ext4 root labelled k8s-ha-root,
# last, so cloud-init's growpart can grow it to the size the program gives the root volume.
set -euo pipefail

out=$1 suite=$2 mirror=$3 root_mib=$4 extra=${5:-} rootfs_tar=${6:-}
work=$(mktemp -d "${out}.work.XXXXXX")
cleanup() {
  for fs in proc sys dev/pts dev; do umount -l "$work/root/$fs" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

log() { printf '== image: %s (%ss)\n' "$*" "$SECONDS" >&2; }

# What every guest needs: a kernel, systemd, sshd, cloud-init (NoCloud), the guest agent, and the
# tools the bootstrap steps call (ip, sudo, growpart for cloud-init's growpart module).
base=linux-image-amd64,systemd,systemd-sysv,udev,dbus,openssh-server,cloud-init,qemu-guest-agent,sudo
base+=,netplan.io,iproute2,procps,psmisc,ca-certificates,cloud-guest-utils,fdisk,e2fsprogs,kmod,initramfs-tools
include=$base${extra:+,$extra}

log "debootstrap $suite from $mirror (+ ${extra:-no role packages})"
debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -30 "$work/root/debootstrap/debootstrap.log" >&2
  echo "debootstrap failed (log above)" >&2
  exit 1
}

log "configuring"
root=$work/root
cat >"$root/etc/fstab" <<'EOF'
LABEL=k8s-ha-root / ext4 defaults,errors=remount-ro 0 1
EOF
cat >"$root/etc/cloud/cloud.cfg.d/90-k8s-ha-image.cfg" <<'EOF'
# k8s-ha image: the program hands every guest a NoCloud disk; never probe network datasources.
datasource_list: [NoCloud, None]
system_info:
  network:
    renderers: [netplan, networkd]
# Only the modules the program's user-data uses (configs/cloudinit/user-data.yaml.j2). Each module is
# Python imported and run on first boot, and TCG guests pay 20-30x for that: the stock lists made
# cloud-init about three quarters of a guest's first boot (measured: 250 of 318 s of userspace).
cloud_init_modules: [growpart, resizefs, disk_setup, mounts, set_hostname, update_hostname,
                     update_etc_hosts, users-groups, ssh]
cloud_config_modules: [set-passwords, apt-configure, timezone]
cloud_final_modules: [final-message]
EOF
# Each guest gets its own identity on first boot: no shared machine-id, no shared SSH host keys
# (cloud-init installs the program's pinned key before sshd starts).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
echo "k8s-ha-image" >"$root/etc/hostname"
# Baked role packages are installed, not running: the bootstrap steps configure and enable them.
for unit in haproxy keepalived etcd; do
  if [ -e "$root/lib/systemd/system/$unit.service" ] || [ -e "$root/usr/lib/systemd/system/$unit.service" ]; then
    chroot "$root" systemctl disable "$unit.service" >/dev/null 2>&1 || true
  fi
done
rm -rf "$root/var/lib/etcd/default" "$root/var/lib/etcd/member"
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1 || true
# First-boot work that is the same on every guest is done once here: the linker cache and journal
# catalog (20 s each on a TCG guest's first boot otherwise). No binfmt handlers and no unattended
# apt runs on cluster nodes (the bootstrap steps own the packages; the guests may have no route out).
chroot "$root" ldconfig
chroot "$root" journalctl --update-catalog >/dev/null 2>&1 || true
chroot "$root" systemctl mask systemd-binfmt.service proc-sys-fs-binfmt_misc.automount >/dev/null 2>&1 || true
chroot "$root" systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists/"* "$root/var/log/"*.log "$root/debootstrap" "$root/var/cache/apt/"*.bin

if [ -n "$rootfs_tar" ]; then
  log "root file system tar"
  tar --numeric-owner --xattrs --acls -C "$root" -cf "$rootfs_tar.partial" .
  mv "$rootfs_tar.partial" "$rootfs_tar"
fi

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)

log "file systems"
boot_mib=160
mkfs.vfat -C -n K8SHABOOT "$work/boot.img" $((boot_mib * 1024)) >/dev/null
cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT linux
TIMEOUT 0
PROMPT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=k8s-ha-root ro console=ttyS0,115200 net.ifnames=0 biosdevname=0
EOF
mcopy -i "$work/boot.img" "$kernel" ::/vmlinuz
mcopy -i "$work/boot.img" "$initrd" ::/initrd.img
mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$work/boot.img"
mkfs.ext4 -q -L k8s-ha-root -d "$root" "$work/root.img" "${root_mib}M"

log "disk"
disk=$work/disk.raw
start=2048 boot_sectors=$((boot_mib * 2048)) root_sectors=$((root_mib * 2048))
truncate -s $(((start + boot_sectors + root_sectors + 2048) * 512)) "$disk"
sfdisk -q "$disk" <<EOF
label: dos
start=$start, size=$boot_sectors, type=c, bootable
start=$((start + boot_sectors)), size=$root_sectors, type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.img" of="$disk" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=$(((start + boot_sectors) * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
qemu-img convert -q -O qcow2 "$disk" "$out.partial"
mv "$out.partial" "$out"
log "wrote $out"
