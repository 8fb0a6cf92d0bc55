#!/bin/bash -e
# No default password anywhere and no SSH until the manager enables it with a key.
on_chroot <<'CHROOT'
passwd --lock root
passwd --lock "${FIRST_USER_NAME:-nnadmin}" || true
systemctl disable ssh.service 2>/dev/null || true
systemctl mask serial-getty@ttyAMA0.service 2>/dev/null || true
CHROOT
# The data partition (label nnode-data) holds /var/lib/nnode; updates rewrite only the rootfs slots.
grep -q nnode-data "${ROOTFS_DIR}/etc/fstab" || \
	echo "LABEL=nnode-data /var/lib/nnode ext4 defaults,noatime,nofail,x-systemd.device-timeout=10s 0 2" \
	>> "${ROOTFS_DIR}/etc/fstab"
