#!/bin/sh
# Builds the root file system that the test bed's systemd hosts boot from.
# Usage: rootfs.sh DEST MIRROR. Run under flock by rootfs.ts; DEST appears
# atomically (built beside it, then renamed), so a killed build leaves no half tree.
set -eu
dest=$1 mirror=$2
[ -d "$dest" ] && exit 0
work="$dest.building.$$"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,rsync,curl,sudo \
  bookworm "$work" "$mirror"

# Every container must get its own name and machine id, not the tree's.
rm -f "$work/etc/hostname" "$work/var/lib/dbus/machine-id"
: > "$work/etc/machine-id"
# Each host gets its own host key, bound in read-only at boot.
rm -f "$work"/etc/ssh/ssh_host_*
cat > "$work/etc/ssh/sshd_config.d/testbed.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
MaxStartups 200:30:400
CONF
mkdir -p "$work/root/.ssh" && chmod 700 "$work/root/.ssh"
for unit in getty@tty1.service console-getty.service serial-getty@console.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
  systemd-timesyncd.service; do
  ln -sf /dev/null "$work/etc/systemd/system/$unit"
done
rm -rf "$work"/var/cache/apt/archives/*.deb "$work"/var/lib/apt/lists/*
mv "$work" "$dest"
trap - EXIT
