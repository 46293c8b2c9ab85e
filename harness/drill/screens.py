"""What a lab VM's screen showed: a screenshot through libvirt (the VM's VGA adapter; no
display is opened, no port listens) at the end of its boot, and when its boot timed out, so
a report shows a kernel panic, a GRUB prompt or a blue screen beside the serial console. A
PNG in the run folder, in its manifest, shown in the report. A screenshot that cannot be
taken is said and never changes the verdict."""

from __future__ import annotations

import hashlib
import struct
import zlib

from harness.drill.clock import utc_stamp
from harness.drill.context import Drill
from harness.errors import DrillError
from harness.evidence.model import Screen

__all__ = ["Screen", "as_png", "png_size", "take"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def take(d: Drill, domain: str, machine: str, when: str) -> None:
    """Screenshot ``domain`` now, for ``machine`` ("" for a one-VM drill): ``when`` says at
    which point of the drill (``end of boot``, ``boot timed out``)."""
    if d.hv is None:
        return
    try:
        mime, data = d.hv.screenshot(domain)
        png = as_png(mime, data)
    except (DrillError, ValueError) as exc:
        d.clock.say("note", f"screenshot ({when}) not taken: {exc}")
        return
    width, height = png_size(png)
    stem = f"screen-{machine}" if machine else "screen"
    name = f"{stem}-{'timeout' if 'timed out' in when else 'boot'}.png"
    d.outcome.images[name] = png
    digest = hashlib.sha256(png).hexdigest()
    d.result.screens.append(
        Screen(machine, when, name, width, height, digest, utc_stamp())
    )


def as_png(mime: str, data: bytes) -> bytes:
    """libvirt's image as PNG: as it came (QEMU 7.1 and later), or a binary PPM (P6, older
    QEMU) encoded here. :class:`ValueError` for anything else."""
    if data.startswith(PNG_MAGIC):
        return data
    if not data.startswith(b"P6"):
        raise ValueError(f"libvirt returned {mime or 'an unknown type'}, not PNG or PPM")
    fields = data.split(maxsplit=4)
    if len(fields) < 5 or fields[3] != b"255":
        raise ValueError("the PPM screenshot is not 8-bit RGB")
    width, height, pixels = int(fields[1]), int(fields[2]), fields[4]
    row = width * 3
    if len(pixels) < row * height:
        raise ValueError("the PPM screenshot is truncated")
    raw = b"".join(b"\0" + pixels[y * row : (y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        PNG_MAGIC
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
