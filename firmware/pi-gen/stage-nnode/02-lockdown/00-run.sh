#!/bin/bash -e
# No default password anywhere and no SSH until the manager enables it with a key. sshd is enabled but starts only
# when the key file is on the data partition (etc/systemd/system/ssh.service.d/nnode.conf); no host key is baked
# into the image: every device makes its own there (ssh-from-boot), so they survive updates.
on_chroot <<'CHROOT'
passwd --lock root
passwd --lock "${FIRST_USER_NAME:-nnadmin}" || true
systemctl enable ssh.service 2>/dev/null || true
systemctl disable regenerate_ssh_host_keys.service 2>/dev/null || true
rm -f /etc/ssh/ssh_host_*
systemctl mask serial-getty@ttyAMA0.service 2>/dev/null || true
CHROOT
# The data partition (label nnode-data, made by make-ab-image with node/ and ssh/ in it) holds everything that must
# survive an update: /var/lib/nnode (the node's settings, key, database, clips) is its node/ folder, bind-mounted;
# its ssh/ folder is root's (sshd refuses keys in a folder the node's user owns). Not nofail: without the data
# partition the node must not start on the root slot's empty folder (nnode.service has RequiresMountsFor).
grep -q nnode-data "${ROOTFS_DIR}/etc/fstab" || cat >> "${ROOTFS_DIR}/etc/fstab" <<'FSTAB'
LABEL=nnode-data /var/lib/nnode-data ext4 defaults,noatime,x-systemd.device-timeout=30s 0 2
/var/lib/nnode-data/node /var/lib/nnode none bind,x-systemd.requires-mounts-for=/var/lib/nnode-data 0 0
FSTAB
install -d -m 0755 "${ROOTFS_DIR}/var/lib/nnode-data"
install -d -m 0700 "${ROOTFS_DIR}/var/lib/nnode"
