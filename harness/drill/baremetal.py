"""A whole-system restore's work in the rescue system (``restore: system``), over the
drill's SSH connection to it, as root: what an admin does to rebuild a server on a new disk.

``partition``: the blank disk gets the planned table (:mod:`harness.sources.system`), each
file system is made with the UUID and label the backup's fstab names, and the root is mounted
at :data:`~harness.scenario.model.SYSTEM_TARGET` with the others below it. The files are then
streamed in as any file-level restore (the pipeline's ``restore`` phase). ``bootloader``:
/dev, /proc, /sys and /run bound into the restored tree and its *own* boot loader installed
from a chroot (``grub-install`` and ``update-grub``, or ``extlinux``), the drill's key added if
the scenario asks, then everything unmounted and flushed: the disk is ready to boot alone.
Each is one command: the guest works, the host waits (bounded, cancellable).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import paramiko

from harness.evidence.model import GuestChange
from harness.remote.commands import run_step
from harness.scenario.model import SYSTEM_TARGET
from harness.sources.system import BootPlan, DiskPlan, Filesystem

DISK = "/dev/vdb"  # the blank disk, the rescue system's second disk
PART_WAIT_S = 30  # for udev to make a partition's device node
FAT_OPTIONS = {"umask", "fmask", "dmask", "uid", "gid", "codepage", "iocharset", "shortname",
               "utf8"}  # fmt: skip

_PARTITION = r"""
set -eu
disk={disk} target={target}
[ -b "$disk" ] || {{ echo "the blank disk $disk is not in the rescue system" >&2; exit 30; }}
sfdisk -q --wipe always --wipe-partitions always "$disk" <<'TABLE'
{table}TABLE
udevadm settle --timeout={wait} 2>/dev/null || true
for n in {numbers}; do
    waited=0
    until [ -b "$disk$n" ]; do
        [ "$waited" -lt {wait} ] || {{
            echo "no device $disk$n after the table was written" >&2; exit 31; }}
        sleep 1; waited=$((waited + 1))
    done
done
{mkfs}
mkdir -p "$target"
{mounts}
"""

_BOOTLOADER = r"""
set -eu
disk={disk} t={target}
kernels=$(ls "$t"/boot/vmlinu* 2>/dev/null | wc -l)
[ "$kernels" -gt 0 ] || {{ echo "the restored /boot holds no kernel" >&2; exit 40; }}
for d in dev proc sys run tmp; do   # mount points a backup of / leaves out (other file systems)
    [ -d "$t/$d" ] && continue
    mkdir -p "$t/$d"; echo "created: /$d"
    [ "$d" != tmp ] || chmod 1777 "$t/tmp"
done
mkdir -p "$t/dev/pts"
mount --bind /dev "$t/dev"; mount --bind /dev/pts "$t/dev/pts"
mount -t proc proc "$t/proc"; mount -t sysfs sysfs "$t/sys"; mount -t tmpfs tmpfs "$t/run"
{install}
{inject}
sync
umount -R "$t"
blockdev --flushbufs "$disk"
"""

_GRUB = r"""
install=$(chroot "$t" sh -c 'command -v grub-install || command -v grub2-install') || {
    echo "the restored system has no grub-install" >&2; exit 41; }
echo "boot loader: $(chroot "$t" "$install" --version)"
chroot "$t" "$install" --target=i386-pc "$disk" 2>&1 | tail -3
if chroot "$t" sh -c 'command -v update-grub' >/dev/null; then
    chroot "$t" update-grub 2>&1 | tail -8
elif chroot "$t" sh -c 'command -v grub2-mkconfig' >/dev/null; then
    chroot "$t" grub2-mkconfig -o /boot/grub2/grub.cfg 2>&1 | tail -8
else
    chroot "$t" grub-mkconfig -o /boot/grub/grub.cfg 2>&1 | tail -8
fi
"""

_GRUB_EFI = r"""
install=$(chroot "$t" sh -c 'command -v grub-install || command -v grub2-install') || {
    echo "the restored system has no grub-install" >&2; exit 41; }
echo "boot loader: $(chroot "$t" "$install" --version)"
esp=/boot/efi
mountpoint -q "$t/boot/efi" || esp=/efi
# --removable: EFI/BOOT/BOOTX64.EFI, which the firmware boots with no boot entry in its NVRAM
# (the rescue system runs under BIOS and writes no EFI variable: --no-nvram)
chroot "$t" "$install" --target=x86_64-efi --efi-directory="$esp" --removable --no-nvram \
    2>&1 | tail -3
if chroot "$t" sh -c 'command -v update-grub' >/dev/null; then
    chroot "$t" update-grub 2>&1 | tail -8
else
    chroot "$t" grub-mkconfig -o /boot/grub/grub.cfg 2>&1 | tail -8
fi
"""

_EXTLINUX = r"""
folder=/boot/extlinux
[ -f "$t/boot/extlinux/extlinux.conf" ] || folder=/boot/syslinux
echo "boot loader: $(chroot "$t" extlinux --version 2>&1 | head -1)"
chroot "$t" extlinux --install "$folder" 2>&1 | tail -3
mbr=$(ls "$t/usr/lib/EXTLINUX/mbr.bin" "$t/usr/lib/syslinux/mbr/mbr.bin" 2>/dev/null | head -1)
dd if="$mbr" of="$disk" bs=440 count=1 conv=notrunc status=none
echo "extlinux's MBR code from the restored ${mbr#"$t"}"
"""

_INJECT = r"""
entry=$(chroot "$t" getent passwd {user}) || {{
    echo "the restored system has no user {user}" >&2; exit 42; }}
home=$(echo "$entry" | cut -d: -f6); ids=$(echo "$entry" | cut -d: -f3,4)
keys="$t$home/.ssh/authorized_keys"
state() {{
    if [ ! -f "$keys" ]; then echo "$1 $home/.ssh/authorized_keys"; return; fi
    echo "$1 $home/.ssh/authorized_keys $(stat -c '%a %u %g %s' "$keys") \
$(sha256sum <"$keys" | cut -c1-64)"
}}
state "key before:"
install -d -m 0700 "$t$home/.ssh"
chroot "$t" chown "$ids" "$home/.ssh"
printf '%s\n' {key} >>"$keys"
chmod 0600 "$keys"
chroot "$t" chown "$ids" "$home/.ssh/authorized_keys"
state "key after:"
"""


def partition(
    client: paramiko.SSHClient, plan: DiskPlan, phase: str, timeout_s: float,
    cancelled: Callable[[], None],
) -> str:  # fmt: skip
    """The table, the file systems and their mounts; what is mounted where, in words."""
    disk, target = DISK, SYSTEM_TARGET
    mkfs = "\n".join(shlex.join(f.mkfs(f"{disk}{f.partition}")) for f in plan.filesystems)
    mounts = "\n".join(
        f"mkdir -p {shlex.quote(target + f.mount.rstrip('/'))}\n"
        f"mount {_options(f)}{disk}{f.partition} {shlex.quote(target + f.mount.rstrip('/'))}"
        for f in plan.mounted
    )  # fmt: skip
    numbers = " ".join(str(f.partition) for f in plan.filesystems)
    script = _PARTITION.format(disk=disk, target=shlex.quote(target), table=plan.table,
                               wait=PART_WAIT_S, numbers=numbers, mkfs=mkfs,
                               mounts=mounts)  # fmt: skip
    run_step(client, phase, script, timeout_s, cancelled)
    made = "; ".join(f.words() for f in plan.filesystems)
    return f"{plan.layout}: {made}; mounted at {SYSTEM_TARGET} in the rescue system"


def _options(fs: Filesystem) -> str:
    """FAT keeps no owner or mode: its mount options (fstab's) give every file the same, and
    ``quiet`` lets tar's chown and chmod of what FAT cannot hold succeed without effect."""
    if fs.fstype != "vfat":
        return ""
    kept = [o for o in fs.options if o.split("=")[0] in FAT_OPTIONS]
    return f"-o {shlex.quote(','.join([*kept, 'quiet']))} "


def bootloader(
    client: paramiko.SSHClient, plan: BootPlan, phase: str, timeout_s: float,
    cancelled: Callable[[], None], key: tuple[str, str] | None = None,
) -> tuple[str, str]:  # fmt: skip
    """The restored system's own boot loader, from a chroot; with ``key`` (user, public key
    line) the drill's key added for that user. The disk is unmounted and flushed after. What
    was installed, in words, and the tools' output."""
    inject = ""
    if key is not None:
        inject = _INJECT.format(user=shlex.quote(key[0]), key=shlex.quote(key[1]))
    script = _BOOTLOADER.format(disk=DISK, target=shlex.quote(SYSTEM_TARGET),
                                install={"grub": _GRUB, "grub-efi": _GRUB_EFI,
                                         "extlinux": _EXTLINUX}[plan.loader],
                                inject=inject)  # fmt: skip
    out = run_step(client, phase, script, timeout_s, cancelled)
    said = [line.removeprefix("boot loader: ") for line in out.splitlines()
            if line.startswith("boot loader: ")]  # fmt: skip

    words = {"grub": "GRUB for BIOS (grub-install and its configuration)",
             "grub-efi": "GRUB for UEFI (grub-install --removable onto the EFI system "
                         "partition, and its configuration)",
             "extlinux": "extlinux and its MBR code"}[plan.loader]  # fmt: skip
    made = [line.removeprefix("created: ") for line in out.splitlines()
            if line.startswith("created: ")]  # fmt: skip
    return (f"{words}, the restored system's own ({said[0] if said else plan.loader}), "
            f"installed from a chroot; kernels {', '.join(plan.kernels)}"
            + (f"; mount points the backup left out created: {', '.join(made)}"
               if made else "")), out  # fmt: skip


def key_change(output: str, machine: str) -> GuestChange | None:
    """The drill's key added to the rebuilt disk (``login.inject_key``), from the bootloader
    phase's output: the file's state before and after."""
    states: dict[str, dict[str, Any] | None] = {}
    path = ""
    for line in output.splitlines():
        for when in ("before", "after"):
            if line.startswith(f"key {when}: "):
                fields = line.split()[2:]
                path = fields[0]
                states[when] = None if len(fields) < 6 else {
                    "mode": fields[1], "uid": int(fields[2]), "gid": int(fields[3]),
                    "size": int(fields[4]), "sha256": fields[5]}  # fmt: skip
    if "after" not in states:
        return None
    before = states.get("before")
    return GuestChange(machine, path, "modified" if before else "added",
                       "login.inject_key: the drill's key, added by the rescue system to the "
                       "rebuilt disk after the restore and its proof", before,
                       states["after"])  # fmt: skip
