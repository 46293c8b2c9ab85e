"""``qemu-img``: inspect and check a backup image, create the copy-on-write overlay.

Every call is bounded by a timeout and opens the backup read-only (``-U`` shares locks with
other readers, so a running drill of the same backup does not block a second one).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InfraError, PhaseFailed, PhaseTimeout

#: Disk formats a lab boots (through a qcow2 overlay): a backup, or a base image.
BOOTABLE_FORMATS = ("qcow2", "raw", "vmdk")

QEMU_IMG = "qemu-img"


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says of an image."""

    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None


def _run(args: list[str], timeout_s: float, phase: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [QEMU_IMG, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise InfraError("qemu-img not found: install qemu-utils") from exc
    except subprocess.TimeoutExpired as exc:
        raise PhaseTimeout(phase, f"qemu-img {args[0]} took longer than {timeout_s:g}s") from exc


def info(path: Path, fmt: str = "auto", timeout_s: float = 60) -> ImageInfo:
    """Format and sizes; a broken image is a verify failure, not a crash."""
    args = ["info", "--output=json", "-U"]
    if fmt != "auto":
        args += ["-f", fmt]
    proc = _run([*args, str(path)], timeout_s, "verify")
    if proc.returncode != 0:
        raise PhaseFailed("verify", f"qemu-img info rejected the backup: {proc.stderr.strip()}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return ImageInfo(
        format=str(data["format"]),
        virtual_size=int(data["virtual-size"]),
        actual_size=data.get("actual-size"),
        backing_file=data.get("backing-filename"),
    )


def check(path: Path, fmt: str, timeout_s: float = 600) -> str:
    """``qemu-img check`` for formats that have metadata to check; its summary line."""
    if fmt not in ("qcow2", "qed", "vdi", "vhdx", "vmdk", "parallels"):
        return f"no metadata to check for format {fmt}"
    proc = _run(["check", "-U", "-f", fmt, str(path)], timeout_s, "verify")
    output = (proc.stdout + proc.stderr).strip()
    # 0: clean; 3: leaked clusters only (harmless, space not yet reclaimed); else: corrupt.
    if proc.returncode not in (0, 3):
        raise PhaseFailed("verify", f"qemu-img check found the backup damaged: {output}")
    lines = output.splitlines()
    verdict = [line for line in lines if "error" in line.lower() or "leaked" in line.lower()]
    return "; ".join(verdict) or (lines[0] if lines else "no errors were found")


def create_overlay(overlay: Path, backing: Path, image: ImageInfo, timeout_s: float = 60) -> None:
    """A qcow2 overlay over ``backing``; ``-u`` means the backup is not even opened: O(1)."""
    proc = _run(
        [
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            str(backing),
            "-F",
            image.format,
            str(overlay),
            str(image.virtual_size),
        ],
        timeout_s,
        "provision",
    )
    if proc.returncode != 0:
        raise InfraError(f"cannot create the overlay {overlay}: {proc.stderr.strip()}")


def version(timeout_s: float = 10) -> str:
    """``qemu-img --version``'s first line, for the evidence."""
    proc = _run(["--version"], timeout_s, "verify")
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"
