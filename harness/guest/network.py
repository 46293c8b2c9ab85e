"""Read a boot disk's own network configuration, read-only, before it boots.

libguestfs (:mod:`.appliance`) opens the disk and its backing files read-only and hands back
the text of the configuration files :mod:`.netconf` understands. Its appliance boot costs
seconds (about 15 s under software emulation), so the answer is kept per disk: keyed by the
identity of every layer (device, inode, size, modification and change times), so a backup
replaced or touched in any way is read again. Only the parsed result is kept, never the files
(a NetworkManager keyfile may hold a Wi-Fi password), with the system's file systems (mount
point -> device): key injection mounts those instead of inspecting the same content again.
An entry no drill read for 30 days is removed when a new one is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InfraError, PhaseFailed
from harness.guest import appliance
from harness.guest.netconf import PATHS, Address, NetworkConfig, detect

PHASE = "network"
CACHE_VERSION = 4
KEEP_S = 30 * 86400  # an entry no drill read for 30 days is removed


@dataclass(frozen=True)
class Reading:
    """What a machine's disks say: their network configuration (None: not read, and why)
    and the file systems of their system (mount point -> device, as libguestfs names it)."""

    config: NetworkConfig | None
    why: str = ""
    mounts: dict[str, str] = field(default_factory=dict)


def read_config(
    disks: list[tuple[Path, str]], layers: list[Path], tcg: bool, cache: Path
) -> Reading:
    """The configuration on a machine's ``disks`` (path, format; the boot disk first) whose
    files are ``layers``; no configuration, and why, when they hold no Linux system to read."""
    key = _key(layers)
    cached = cache / f"{key}.json"
    try:
        reading = _load(json.loads(cached.read_text()))
        os.utime(cached)  # in use: kept by the pruning below
        return reading
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        answer, config = inspect(disks, tcg, PHASE)
    except PhaseFailed as exc:  # not a Linux system: nothing to read, DHCP as ever
        return Reading(None, f"its configuration could not be read: {exc}")
    except InfraError as exc:  # no libguestfs here: drills of DHCP servers still work
        return Reading(None, f"its configuration was not read: {exc}")
    mounts = _mounts(answer.get("system", {}).get("filesystems", {}))
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, **asdict(config), "mounts": mounts}))
    tmp.replace(cached)
    _prune(cache)
    return Reading(config, "", mounts)


def _prune(cache: Path) -> None:
    """Forget what no drill read for :data:`KEEP_S`: every new backup is a new entry (its
    files' identity is the key), so a nightly drill would otherwise add one a night forever.
    Another version's entries and a killed writer's temporary files go the same way."""
    oldest = time.time() - KEEP_S
    for entry in cache.iterdir():
        with suppress(OSError):  # another drill may prune beside this one
            if entry.stat().st_mtime < oldest:
                entry.unlink()


def inspect(
    disks: list[tuple[Path, str]], tcg: bool, phase: str
) -> tuple[dict[str, Any], NetworkConfig]:
    """libguestfs's read-only inspection of ``disks`` (path, format; the boot disk first):
    its whole answer (the system, for ``init``) and the network configuration it found."""
    answer = appliance.call({
        "op": "inspect", "disks": [{"path": str(p), "format": f} for p, f in disks],
        "tcg": tcg, "network_paths": list(PATHS),
    }, phase)  # fmt: skip
    return answer, detect({str(k): str(v) for k, v in answer.get("network_files", {}).items()})


def _key(layers: list[Path]) -> str:
    identity = []
    for path in layers:
        st = path.stat()
        identity.append([str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                         st.st_ctime_ns])  # fmt: skip
    return hashlib.sha256(json.dumps([CACHE_VERSION, identity]).encode()).hexdigest()[:32]


def _load(data: dict[str, Any]) -> Reading:
    if data.get("version") != CACHE_VERSION:
        raise ValueError("another version")
    return Reading(NetworkConfig(
        tuple(Address(**a) for a in data["addresses"]), tuple(data["dhcp"]),
        tuple(data["unsupported"]), tuple(data["files"]),
        tuple((str(n), str(src)) for n, src in data["nameservers"]),
    ), "", _mounts(data["mounts"]))  # fmt: skip


def _mounts(found: dict[str, Any]) -> dict[str, str]:
    """Mount point -> device, as libguestfs' inspection names them."""
    return {str(k): str(v) for k, v in found.items()}
