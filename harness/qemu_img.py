"""``qemu-img``: inspect and check a backup image, create the copy-on-write overlay.

Every call is bounded by a timeout and opens the backup read-only (``-U`` shares locks with
other readers, so a running drill of the same backup does not block a second one).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InfraError, PhaseFailed, PhaseTimeout
from harness.kinds import BOOTABLE_FORMATS

QEMU_IMG = "qemu-img"


#: Layers a backing chain may have below its top image (QEMU itself allows far more; a chain
#: this deep is a mistake, or a loop written to look like a chain).
MAX_CHAIN_DEPTH = 64


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says of an image."""

    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None
    backing_format: str | None = None


@dataclass(frozen=True)
class Layer:
    """One image of a backing chain, as QEMU will open it."""

    path: Path
    format: str


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
        backing_format=data.get("backing-filename-format"),
    )


def backing_chain(path: Path, top: ImageInfo) -> list[Layer]:
    """Every image below ``path`` (its backing file, that one's, …), top down, each resolved
    as QEMU resolves it: a relative name is relative to the folder of the image naming it.
    ``qemu-img info`` opens each one alone (never its backing file), so a missing or
    unreadable layer, a loop, a protocol (``nbd:``, ``json:``) or a chain deeper than
    :data:`MAX_CHAIN_DEPTH` fails verify naming the layer."""
    layers: list[Layer] = []
    seen = {path.resolve()}
    current, meta = path, top
    while meta.backing_file:
        depth = len(layers) + 1
        where = f"layer {depth} of the backing chain of {path} (named by {current})"
        if depth > MAX_CHAIN_DEPTH:
            raise PhaseFailed("verify", f"the backing chain of {path} is deeper than "
                                        f"{MAX_CHAIN_DEPTH} layers")  # fmt: skip
        named = meta.backing_file
        if ":" in named.split("/", 1)[0]:
            raise PhaseFailed("verify", f"{where}: {named!r} is not a file (a protocol); "
                                        "only local files are drilled")  # fmt: skip
        layer = Path(named) if named.startswith("/") else current.parent / named
        if not layer.is_file():
            raise PhaseFailed("verify", f"{where}: {layer} does not exist")
        if not os.access(layer, os.R_OK):
            raise PhaseFailed("verify", f"{where}: {layer} is not readable")
        if layer.resolve() in seen:
            raise PhaseFailed("verify", f"{where}: {layer} loops back into the chain")
        seen.add(layer.resolve())
        meta = info(layer, meta.backing_format or "auto")
        if meta.format not in BOOTABLE_FORMATS:
            raise PhaseFailed("verify", f"{where}: unsupported image format {meta.format}")
        layers.append(Layer(layer, meta.format))
        current = layer
    return layers


def head(path: Path, fmt: str, sectors: int = 34, timeout_s: float = 60) -> bytes:
    """The first ``sectors`` sectors of the disk the image holds (through its backing
    chain), read-only: ``qemu-img dd`` opens its input read-only."""
    with tempfile.TemporaryDirectory(prefix="rdrill-head-") as folder:
        out = Path(folder) / "head.raw"
        proc = _run(["dd", "-f", fmt, "-O", "raw", f"if={path}", f"of={out}", "bs=512",
                     f"count={sectors}"], timeout_s, "verify")  # fmt: skip
        if proc.returncode != 0:
            raise PhaseFailed("verify", f"cannot read the start of {path}: "
                                        f"{proc.stderr.strip()}")  # fmt: skip
        return out.read_bytes()


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


def rebase_unsafe(overlay: Path, backing: Path, fmt: str, timeout_s: float = 60) -> None:
    """Point an overlay at ``backing`` by name only (``-u``: neither file's data is read):
    the same backup, at the path another host sees it by."""
    proc = _run(["rebase", "-q", "-u", "-f", "qcow2", "-b", str(backing), "-F", fmt,
                 str(overlay)], timeout_s, "prepare guest")  # fmt: skip
    if proc.returncode != 0:
        raise InfraError(f"cannot rebase the overlay {overlay}: {proc.stderr.strip()}")


def create_blank(path: Path, size: int, timeout_s: float = 60) -> None:
    """An empty, sparse qcow2 disk of ``size`` bytes (a whole-system restore's target)."""
    proc = _run(["create", "-q", "-f", "qcow2", str(path), str(size)], timeout_s, "provision")
    if proc.returncode != 0:
        raise InfraError(f"cannot create the blank disk {path}: {proc.stderr.strip()}")


def version(timeout_s: float = 10) -> str:
    """``qemu-img --version``'s first line, for the evidence."""
    proc = _run(["--version"], timeout_s, "verify")
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"
