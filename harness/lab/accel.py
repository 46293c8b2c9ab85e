"""Choose the accelerator: ``kvm``, ``tcg`` (software emulation), or ``auto``.

``auto`` must not pick a KVM that cannot boot a guest: nested virtualisation can expose a
``/dev/kvm`` that answers ioctls while every guest hangs before its first instruction. So
``auto`` boots a 512-byte probe (a boot sector that writes to QEMU's isa-debug-exit port)
under KVM with a short timeout, and uses KVM only if the probe exits as written. The answer
is cached per host boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

QEMU_SYSTEM = "qemu-system-x86_64"
PROBE_TIMEOUT_S = 10.0
# Assembled from kvm-probe.S beside this file (its header says what it exercises and how
# to rebuild it): protected mode, a TSS, int/iret, paging, long mode, then ``out 0xf4``.
_PROBE_CODE = bytes.fromhex(
    "fa31c08ed88ec08ed0bc0070660f0116f07c0f20c00c010f22c066ea227c0000080066b810008ed88ec08ed0"
    "66b818000f00d8b8ba7c000066a30051000066c70502510000080066c70504510000008ec1e81066a3065100"
    "000f011df67c0000cd20bf001000000f22df31c0b900100000f3abc7050010000003200000c7050020000003"
    "300000c70500300000830000000f20e083c8200f22e0b9800000c00f320d000100000f300f20c00d00000080"
    "0f22c0eabb7c00002000cfb001e6f4f4ebfd660f1f4400000000000000000000ffff0000009acf00ffff0000"
    "0092cf00670000600089000000000000009a20002700c87c0000070100500000"
)
_PROBE_EXIT = 3


def probe_sector() -> bytes:
    """The probe's boot sector: code, zero padding, and the 0x55AA boot signature."""
    return _PROBE_CODE.ljust(510, b"\0") + b"\x55\xaa"


def probe(accel: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Boot the probe sector with ``accel``; (works, why)."""
    with tempfile.TemporaryDirectory(prefix="rdrill-probe-") as tmp:
        image = Path(tmp) / "probe.img"
        image.write_bytes(probe_sector())
        cmd = [
            QEMU_SYSTEM, "-accel", accel, "-machine", "pc", "-m", "16", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "none", "-monitor", "none",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive", f"file={image},format=raw,if=ide",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except FileNotFoundError:
            return False, f"{QEMU_SYSTEM} not found"
        except subprocess.TimeoutExpired as exc:
            stderr = (exc.stderr or b"").decode(errors="replace")
            if "internal error" in stderr:
                return False, f"{accel} cannot run a boot loader here (KVM internal error)"
            return False, f"a {accel} probe guest did not finish in {timeout_s:g}s"
    if proc.returncode == _PROBE_EXIT:
        return True, f"{accel} probe guest ran a boot loader's instructions"
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return False, f"{accel} probe failed: {err[-1] if err else f'exit {proc.returncode}'}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def qemu_version() -> str:
    """``qemu-system-x86_64 --version``'s first line, for the evidence."""
    try:
        proc = subprocess.run(
            [QEMU_SYSTEM, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"


def choose(requested: str, cache_dir: Path) -> tuple[str, str]:
    """The accelerator to use for ``requested`` and the reason, for the evidence."""
    if requested in ("kvm", "tcg"):
        return requested, f"{requested} requested"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "auto: KVM not available, using software emulation (TCG)"
    cache = cache_dir / "kvm-probe.json"
    boot_id = _boot_id()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("boot_id") == boot_id:
            works, why = bool(cached["works"]), str(cached["why"])
            return ("kvm" if works else "tcg"), f"auto: {why} (cached this boot)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no cache, or a damaged one: probe again
    works, why = probe("kvm")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}")  # drills starting together
        tmp.write_text(json.dumps({"boot_id": boot_id, "works": works, "why": why}))
        tmp.replace(cache)
    except OSError:
        pass  # caching is an optimisation only
    return ("kvm" if works else "tcg"), f"auto: {why}"


def choose_remote(requested: str, host_setting: str, kvm_offered: bool) -> tuple[str, str]:
    """The accelerator on a remote host, where no probe guest can be run beforehand: as the
    scenario (or --accelerator) asks, else as the inventory says for the host, else KVM if
    the host's libvirt offers it."""
    if requested in ("kvm", "tcg"):
        return requested, f"{requested} requested"
    if host_setting in ("kvm", "tcg"):
        return host_setting, f"auto: the host inventory sets {host_setting} for this host"
    if kvm_offered:
        return "kvm", "auto: the host's libvirt offers KVM (set accelerator: tcg in the " \
                      "inventory for a host whose KVM cannot boot a guest)"
    return "tcg", "auto: the host's libvirt offers no KVM, using software emulation (TCG)"
