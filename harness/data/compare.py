"""Expected files against the files found in the guest: what is missing, what changed and
how, what is there that nothing expected. A checker checks everything, then reports all it
found (counts exact, the first :data:`LISTED` of each kind listed).

Attributes compared: content (SHA-256) and size always; mode, owner and mtime unless the
scenario ignores them. Owners are compared by name where both sides know the name (a
restore maps owners by name, as tar does), else by number. Modification times are equal
within a second: tar headers (GNU, ustar, restic's and borg's streams) keep whole seconds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from harness.data.manifest import Entry
from harness.data.tree import Found
from harness.durations import format_size
from harness.evidence.model import LISTED, DataProof

ATTRIBUTES = ("content", "size", "mode", "owner", "mtime")


def compare(
    proof: DataProof, expected: Iterable[Entry], found: Mapping[bytes, Found],
    ignore: Iterable[str] = (), coarse: tuple[bytes, ...] = (),
) -> DataProof:  # fmt: skip
    """Fill ``proof`` with the comparison; ``passed`` when nothing is missing or changed
    (nor unexpected, if ``proof.strict``). Files under a ``coarse`` folder (a FAT file system,
    which keeps no owner or mode and times to 2 s) are compared by content and size only."""
    skip = set(ignore)
    bare = skip | {"mode", "owner", "mtime"}
    proof.compared = [a for a in ATTRIBUTES if a not in skip]
    seen: set[bytes] = set()
    for entry in expected:
        seen.add(entry.path)
        proof.files_expected += 1
        proof.bytes_expected += entry.size
        there = found.get(entry.path)
        if there is None:
            proof.missing_count += 1
            if len(proof.missing) < LISTED:
                proof.missing.append(display(entry.path))
            continue
        proof.files_found += 1
        what = differences(entry, there, bare if coarse and entry.path.startswith(coarse)
                           else skip)  # fmt: skip
        if what:
            proof.changed_count += 1
            if len(proof.changed) < LISTED:
                proof.changed.append({"path": display(entry.path), "what": what})
        else:
            proof.files_matching += 1
            proof.bytes_matching += entry.size
    for path in sorted(p for p in found if p not in seen):
        proof.unexpected_count += 1
        if len(proof.unexpected) < LISTED:
            proof.unexpected.append(display(path))
    proof.passed = not proof.missing_count and not proof.changed_count and not (
        proof.strict and proof.unexpected_count)  # fmt: skip
    return proof


def differences(entry: Entry, found: Found, ignore: set[str]) -> list[str]:
    """What differs, each as "attribute: expected → found"."""
    what = []
    if not found.sha256:
        what.append("content: unreadable in the guest")
    elif found.sha256 != entry.sha256:
        what.append(f"content: sha256 {entry.sha256[:12]}… → {found.sha256[:12]}…")
    if found.size != entry.size:
        what.append(f"size: {entry.size} → {found.size}")
    if "mode" not in ignore and found.mode != entry.mode:
        what.append(f"mode: {entry.mode:04o} → {found.mode:04o}")
    if "owner" not in ignore:
        want, got = _owner(entry.uid, entry.user, found.user), _owner(found.uid, found.user,
                                                                      entry.user)  # fmt: skip
        gwant, ggot = _owner(entry.gid, entry.group, found.group), _owner(found.gid, found.group,
                                                                          entry.group)  # fmt: skip
        if want != got or gwant != ggot:
            what.append(f"owner: {want}:{gwant} → {got}:{ggot}")
    if "mtime" not in ignore and abs(found.mtime_ns - entry.mtime_ns) >= 1_000_000_000:
        what.append(f"mtime: {_time(entry.mtime_ns)} → {_time(found.mtime_ns)}")
    return what


def summary(proof: DataProof) -> str:
    """One line: the counts, then the first differences by name."""
    if proof.note:
        return proof.note
    if proof.files_matching == proof.files_expected:
        head = (f"all {proof.files_expected} files identical "
                f"({format_size(proof.bytes_expected)})")  # fmt: skip
    else:
        head = (f"{proof.files_matching} of {proof.files_expected} files identical "
                f"({format_size(proof.bytes_matching)} of "
                f"{format_size(proof.bytes_expected)})")  # fmt: skip
    parts = [head]
    if proof.missing_count:
        parts.append(f"{proof.missing_count} missing ({_first(proof.missing)})")
    if proof.changed_count:
        parts.append(f"{proof.changed_count} changed ("
                     + _first([f"{c['path']}: {', '.join(w.split(':')[0] for w in c['what'])}"
                               for c in proof.changed]) + ")")  # fmt: skip
    if proof.unexpected_count:
        parts.append(f"{proof.unexpected_count} unexpected ({_first(proof.unexpected)})"
                     + ("" if proof.strict else ", allowed"))  # fmt: skip
    return "; ".join(parts)


def display(path: bytes) -> str:
    """A path as text for a report: bytes that are not UTF-8 as ``\\xNN``, line breaks and
    backslashes escaped, so one path is always one line."""
    text = path.decode("utf-8", errors="backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def _owner(number: int, name: str, other_name: str) -> str:
    return name if name and other_name else str(number)


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _first(items: list[str], shown: int = 3) -> str:
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f", … {more} more listed" if more > 0 else "")
