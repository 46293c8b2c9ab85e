"""Variants of the demo web backup as real servers have them (an XFS root beside a separate
/boot, an LVM root), built with libguestfs from the demo image and cached until the demo image
or the recipe changes. Root has no authorized key in them: only injection lets a drill in."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.vm.conftest import DEMO

CACHE = Path(os.environ.get("RESTORE_DRILL_TEST_IMAGES", "/var/cache/restore-drill/test-images"))
ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}

#: the demo image read-only as /dev/sda, a new 3 GiB disk to build as /dev/sdb
_NEW_DISK = """add-ro {source}
disk-create {out} qcow2 3221225472
add {out} format:qcow2
run
"""
_COMMON_HEAD = _NEW_DISK + """part-init /dev/sdb mbr
part-add /dev/sdb p 2048 526335
part-add /dev/sdb p 526336 -1
part-set-bootable /dev/sdb 1 true
mkfs ext2 /dev/sdb1 label:boot
"""
_COMMON_TAIL = """mkdir /boot
mount /dev/sdb1 /boot
mkdir /src
mount-ro /dev/sda1 /src
glob cp-a /src/* /
umount /src
rmdir /src
rm-f /root/.ssh/authorized_keys
write /etc/fstab "{root_device} / {fstype} defaults 0 1\\nLABEL=boot /boot ext2 defaults 0 2\\n"
write /boot/extlinux/extlinux.conf "DEFAULT debian\\nPROMPT 0\\nTIMEOUT 0\\nLABEL debian\\n  LINUX /vmlinuz-{kver}\\n  INITRD /initrd.img-{kver}\\n  APPEND root={root_device} rw console=ttyS0 net.ifnames=0 quiet\\n"
{extra}extlinux /boot/extlinux
upload /usr/lib/syslinux/mbr/mbr.bin /boot/mbr.bin
copy-file-to-device /boot/mbr.bin /dev/sdb size:440
rm /boot/mbr.bin
"""  # noqa: E501
#: lvm2 and what it needs beyond the demo image, fetched by scripts/setup (the tests run
#: where there is no network): the restored system activates its root LV from the initramfs.
DEBS = Path(os.environ.get("RESTORE_DRILL_DEBS", "/var/cache/restore-drill/debs"))
_LVM = """pvcreate /dev/sdb2
vgcreate vgroot /dev/sdb2
lvcreate-free root vgroot 100
mkfs ext4 /dev/vgroot/root label:root
mount /dev/vgroot/root /
"""
_LVM_EXTRA = """mkdir /debs
copy-in {debs} /debs
sh "dpkg -i /debs/*.deb >/dev/null"
sh "update-initramfs -u -k all >/dev/null 2>&1"
rm-rf /debs
"""
ROOTS = {
    "xfs": ("mkfs xfs /dev/sdb2 label:root\nmount /dev/sdb2 /\n", "LABEL=root", "xfs", ""),
    "lvm": (_LVM, "/dev/mapper/vgroot-root", "ext4", _LVM_EXTRA),
}


def kernel_version() -> str:
    listing = subprocess.run(["guestfish", "--ro", "-a", str(DEMO / "web.qcow2"), "-i", "ls",
                              "/boot"], capture_output=True, text=True, env=ENV, check=True,
                             timeout=600).stdout.split()  # fmt: skip
    [kernel] = [n for n in listing if n.startswith("vmlinuz-")]
    return kernel.removeprefix("vmlinuz-")


def variant(kind: str) -> Path:
    """The demo web backup with its root on ``kind``, built once per demo image."""
    make_root, root_device, fstype, extra = ROOTS[kind]
    debs = " ".join(str(d) for d in sorted(DEBS.glob("*.deb")))
    if extra and not debs:
        raise AssertionError(f"no .deb files in {DEBS}: run scripts/setup (it fetches them)")
    recipe = _COMMON_HEAD + make_root + _COMMON_TAIL

    def build(partials: list[Path]) -> None:
        script = recipe.format(source=DEMO / "web.qcow2", out=partials[0],
                               root_device=root_device, fstype=fstype, kver=kernel_version(),
                               extra=extra.format(debs=debs))  # fmt: skip
        subprocess.run(["guestfish"], input=script, text=True, env=ENV, check=True,
                       capture_output=True, timeout=1200)  # fmt: skip

    [out] = _cached("web", recipe, f"web-{kind}.recipe", [f"web-{kind}.qcow2"], build)
    return out


def _cached(demo: str, recipe: str, stamp_name: str, names: list[str],
            build: Callable[[list[Path]], None]) -> list[Path]:  # fmt: skip
    """Files built from a demo image by ``build`` (given their partial paths), kept in the
    cache until that demo image or the ``recipe`` changes."""
    key = hashlib.sha256(((DEMO / f"{demo}.recipe").read_text() + recipe).encode()).hexdigest()
    outs, stamp = [CACHE / n for n in names], CACHE / stamp_name
    if all(o.exists() for o in outs) and stamp.exists() and stamp.read_text() == key[:16]:
        return outs
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)
    partials = [CACHE / f".{n}.partial" for n in names]
    for partial in partials:
        partial.unlink(missing_ok=True)
    build(partials)
    for partial, out in zip(partials, outs, strict=True):
        partial.chmod(0o644)
        partial.rename(out)
    stamp.write_text(key[:16])
    return outs


_TWO_DISKS = """add {os} format:qcow2
disk-create {data} qcow2 1073741824
add {data} format:qcow2
run
mkfs ext4 /dev/sdb label:pgdata
mount /dev/sda1 /
mkdir /mnt/pgdata
mount /dev/sdb /mnt/pgdata
glob cp-a /var/lib/postgresql/* /mnt/pgdata/
sh "chown postgres:postgres /mnt/pgdata && chmod 0755 /mnt/pgdata"
umount /mnt/pgdata
rmdir /mnt/pgdata
glob rm-rf /var/lib/postgresql/*
write-append /etc/fstab "LABEL=pgdata /var/lib/postgresql ext4 defaults 0 2\\n"
"""


def two_disk_db() -> tuple[Path, Path]:
    """The demo db backup as a server with its PostgreSQL data on a second disk: the OS disk
    (``/var/lib/postgresql`` an empty mount point) and the data disk (an ext4 labelled
    pgdata, no partition table, mounted there by the OS disk's fstab)."""

    def build(partials: list[Path]) -> None:
        os_disk, data_disk = partials
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(DEMO / "db.qcow2"),
                        str(os_disk)], check=True, timeout=600)  # fmt: skip
        script = _TWO_DISKS.format(os=os_disk, data=data_disk)
        subprocess.run(["guestfish"], input=script, text=True, env=ENV, check=True,
                       capture_output=True, timeout=1200)  # fmt: skip

    os_disk, data_disk = _cached("db", _TWO_DISKS, "db-2.recipe",
                                 ["db-os.qcow2", "db-data.qcow2"], build)  # fmt: skip
    return os_disk, data_disk


_UEFI = _NEW_DISK + """part-init /dev/sdb gpt
part-add /dev/sdb p 2048 206847
part-add /dev/sdb p 206848 -34
part-set-gpt-type /dev/sdb 1 C12A7328-F81F-11D2-BA4B-00A0C93EC93B
upload {esp} /dev/sdb1
mkfs ext4 /dev/sdb2 label:root
mount /dev/sdb2 /
mkdir /src
mount-ro /dev/sda1 /src
glob cp-a /src/* /
umount /src
rmdir /src
write /etc/fstab "LABEL=root / ext4 defaults,errors=remount-ro 0 1\\n"
"""
_GRUB_CFG = """insmod part_gpt
insmod ext2
search --no-floppy --label root --set=root
linux /boot/vmlinuz-{kver} root=LABEL=root rw console=ttyS0 net.ifnames=0 quiet
initrd /boot/initrd.img-{kver}
boot
"""


def uefi_web() -> Path:
    """The demo web backup as a UEFI server has it: GPT, an EFI System Partition holding
    GRUB (a standalone x86_64-efi image with its config inside) as the removable-media boot
    loader, and the root file system beside it. No BIOS boot loader at all."""

    def build(partials: list[Path]) -> None:
        with tempfile.TemporaryDirectory(prefix="rdrill-uefi-") as folder:
            work = Path(folder)
            (work / "grub.cfg").write_text(_GRUB_CFG.format(kver=kernel_version()))
            loader, esp = work / "BOOTX64.EFI", work / "esp.img"
            subprocess.run(["grub-mkstandalone", "-O", "x86_64-efi", "-o", str(loader),
                            f"boot/grub/grub.cfg={work / 'grub.cfg'}"], check=True,
                           capture_output=True, timeout=300)  # fmt: skip
            subprocess.run(["mkfs.fat", "-C", "-n", "ESP", str(esp), "102400"], check=True,
                           capture_output=True)  # fmt: skip
            subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], check=True)
            subprocess.run(["mcopy", "-i", str(esp), str(loader), "::/EFI/BOOT/BOOTX64.EFI"],
                           check=True)  # fmt: skip
            script = _UEFI.format(source=DEMO / "web.qcow2", out=partials[0], esp=esp)
            subprocess.run(["guestfish"], input=script, text=True, env=ENV, check=True,
                           capture_output=True, timeout=1200)  # fmt: skip

    [out] = _cached("web", _UEFI + _GRUB_CFG, "web-uefi.recipe", ["web-uefi.qcow2"], build)
    return out


_STATIC = """add {out} format:qcow2
run
mount /dev/sda1 /
write /etc/network/interfaces "{interfaces}"
{extra}"""


def static(demo: str, name: str, interfaces: str, extra: str = "") -> Path:
    """The demo ``demo`` backup as a server with a static address: ``interfaces`` is its
    /etc/network/interfaces (as guestfish writes it: ``\\n`` for new lines); ``extra`` more
    guestfish commands (with the root mounted at /)."""
    recipe = _STATIC.format(out="", interfaces=interfaces, extra=extra)

    def build(partials: list[Path]) -> None:
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(DEMO / f"{demo}.qcow2"),
                        str(partials[0])], check=True, timeout=600)  # fmt: skip
        script = _STATIC.format(out=partials[0], interfaces=interfaces, extra=extra)
        subprocess.run(["guestfish"], input=script, text=True, env=ENV, check=True,
                       capture_output=True, timeout=1200)  # fmt: skip

    [out] = _cached(demo, recipe, f"{name}.recipe", [f"{name}.qcow2"], build)
    return out


def ifupdown(address: str, gateway: str, iface: str = "eth0") -> str:
    """An /etc/network/interfaces with one static address, for :func:`static`."""
    return (f"auto lo\\niface lo inet loopback\\n\\nauto {iface}\\niface {iface} inet static\\n"
            f"    address {address}\\n    gateway {gateway}\\n")


#: the static demo db's production address (tests/vm/test_networks.py)
DB_IP = "192.168.10.21"


def db_static() -> Path:
    """The demo db with a static address on eth0."""
    return static("db", "db-static", ifupdown(f"{DB_IP}/24", "192.168.10.1"))


def web_ens18() -> Path:
    """The demo web with its static address on ens18 (a NIC name the lab does not give)."""
    return static("web", "web-ens18", ifupdown("192.168.10.30/24", "192.168.10.1", "ens18"))


def web_dhcp_shop() -> Path:
    """The demo web on DHCP, its shop page pointed at the static db's address."""
    return static("web", "web-dhcp-shop",
                  "auto lo\\niface lo inet loopback\\n\\nauto eth0\\niface eth0 inet dhcp\\n",
                  f'sh "sed -i s/db.shop.internal/{DB_IP}/ /usr/lib/cgi-bin/orders '
                  '/etc/shop/db.pgpass"\n')  # fmt: skip


def web_gw254() -> Path:
    """The demo web with a static address whose gateway is not the subnet's first."""
    return static("web", "web-gw254", ifupdown("192.168.20.30/24", "192.168.20.254"))


#: every image the VM tests derive from the demo backups
BUILDERS: dict[str, Callable[[], object]] = {
    "web-xfs": lambda: variant("xfs"), "web-lvm": lambda: variant("lvm"),
    "db-2-disks": two_disk_db, "web-uefi": uefi_web, "db-static": db_static,
    "web-ens18": web_ens18, "web-dhcp-shop": web_dhcp_shop, "web-gw254": web_gw254,
}  # fmt: skip


def main() -> None:
    """Build (or find cached) every derived image: ``scripts/setup`` runs this, so the timed
    test suite never builds one (``python -m tests.vm.images``)."""
    import time

    for name, build in BUILDERS.items():
        started = time.monotonic()
        build()
        print(f"test image {name}: ready ({time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
