#!/bin/bash -e
# Lay out the boot partition for A/B tryboot (docs/updates.md): board settings move to common.txt, slot A gets
# its own kernel folder and becomes the committed slot. make-ab-image later adds the B and data partitions.
BOOT="${ROOTFS_DIR}/boot/firmware"
if [ ! -f "${BOOT}/common.txt" ]; then
	mv "${BOOT}/config.txt" "${BOOT}/common.txt"
fi
NNODE_BOOT_DIR="${BOOT}" "${ROOTFS_DIR}/usr/lib/nnode/rauc-tryboot-backend" install-boot-files A "${ROOTFS_DIR}" /dev/mmcblk0p2
NNODE_BOOT_DIR="${BOOT}" "${ROOTFS_DIR}/usr/lib/nnode/rauc-tryboot-backend" init A
# Last resort if config.txt were ever lost: the firmware's defaults boot the top-level kernel into slot A.
sed -i 's/$/ rauc.slot=A/' "${BOOT}/cmdline.txt"
