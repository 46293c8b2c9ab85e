"""Human durations and sizes as scenario files write them: ``15m``, ``1h30m``, ``1GiB``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")
DURATION_PATTERN = r"^\s*(\d+d)?\s*(\d+h)?\s*(\d+m)?\s*(\d+(\.\d+)?s)?\s*$"

_SIZE = re.compile(r"^\s*(\d+)\s*(MiB|GiB|M|G)\s*$")
SIZE_PATTERN = r"^\s*\d+\s*(MiB|GiB|M|G)\s*$"

#: How often a wait for a guest (its DHCP lease, its address, its sshd) looks again. Each look
#: is cheap (a lease file read, a TCP SYN); every second cost half a second on average after
#: the guest was ready (0.75 s of the drill's wall time over lease and SSH together).
READINESS_POLL_S = 0.25


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``: a number of seconds, or units ``d h m s`` in that order."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    match = _DURATION.match(str(text))
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (write e.g. 90s, 15m, 4h, 1h30m, 2d)")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """``3725.4`` → ``1h 2m 5.4s``; short and exact enough for a report."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return " ".join(parts)


def parse_size_mib(text: str | int) -> int:
    """MiB in ``text``: a bare number is MiB; ``G``/``GiB`` and ``M``/``MiB`` are binary units."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (write e.g. 512MiB or 2GiB)")
    number, unit = int(match.group(1)), match.group(2)
    return number * 1024 if unit.startswith("G") else number


def format_size(n: int) -> str:
    """Bytes in words: ``812 bytes``, ``3.2 GiB``."""
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
