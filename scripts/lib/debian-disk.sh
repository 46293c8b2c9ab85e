# Sourced by scripts/build-demo-backups and scripts/build-rescue-image: a Debian 12 tree made
# with debootstrap, and a bootable disk image made from it (MBR, one ext4 root partition,
# extlinux installed from this host). No cloud image, no nbd: a loop device at the
# partition's offset (partition nodes are not created in containers).

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm

# debootstrap_tree ROOT PACKAGES LOG: a minimal Debian with PACKAGES (comma-separated)
debootstrap_tree() {
    debootstrap --variant=minbase --include="$2" "$DEBIAN_SUITE" "$1" "$DEBIAN_MIRROR" >"$3" 2>&1 \
        || { tail -20 "$3" >&2; return 1; }
    # Nothing in the guest may wait for a network that the isolated lab does not have.
    ln -sf /dev/null "$1/etc/systemd/system/apt-daily.timer"
    ln -sf /dev/null "$1/etc/systemd/system/apt-daily-upgrade.timer"
}

# extlinux_conf ROOT ROOTSPEC: boot the tree's kernel with root=ROOTSPEC on the serial console
extlinux_conf() {
    local kver
    kver=$(basename "$(ls "$1"/boot/vmlinuz-* | head -1)" | sed 's/^vmlinuz-//')
    install -d "$1/boot/extlinux"
    cat >"$1/boot/extlinux/extlinux.conf" <<CONF
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND root=$2 rw console=ttyS0 net.ifnames=0 quiet
CONF
}

# disk_from_tree ROOT OUT.qcow2 SIZE WORK MKFS-ARGS...: the tree on a compressed qcow2 disk
# (DISK_LOOP names the loop device while it is attached: a caller's trap detaches it)
disk_from_tree() {
    local root=$1 out=$2 size=$3 work=$4 disk
    shift 4
    disk="$work/disk.raw"
    mkdir -p "$work/mnt"
    truncate -s "$size" "$disk"
    printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    DISK_LOOP=$(losetup -f --show -o 1048576 "$disk")
    mkfs.ext4 -q -O ^64bit,^metadata_csum "$@" "$DISK_LOOP"
    mount "$DISK_LOOP" "$work/mnt"
    cp -a "$root/." "$work/mnt/"
    extlinux --install "$work/mnt/boot/extlinux" >/dev/null 2>&1
    umount "$work/mnt"
    losetup -d "$DISK_LOOP"; DISK_LOOP=
    dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
    qemu-img convert -O qcow2 -c "$disk" "$work/out.qcow2"
    rm -f "$disk"
    chmod 0644 "$work/out.qcow2"
    mv "$work/out.qcow2" "$out"
}
