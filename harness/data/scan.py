"""A folder on this host as manifest entries: every regular file under it (symlinks are
not followed and not listed), hashed by several threads (``hashlib`` releases the GIL
while it hashes), in a stable order: sorted by path, byte by byte."""

from __future__ import annotations

import fnmatch
import grp
import hashlib
import os
import pwd
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

from harness.data.manifest import Entry

BATCH = 64  # files per task: few futures for a million small files, yet balanced
FIRST_BATCH = 8
LARGE_FILE = 64 * 1024  # files this large on average are worth worker threads
BUFFER = 1024 * 1024
_local = threading.local()  # each hashing thread's read buffer


class ScanError(Exception):
    """A file that exists but cannot be read: a manifest without it would be false."""


def excluded(relative: bytes, patterns: Sequence[str]) -> bool:
    """Whether a path (relative to the root) or a folder above it matches a pattern: against
    the relative path or its last component (``*.tmp``, ``cache``, ``var/log/*``); a folder
    that matches takes everything under it."""
    if not patterns:
        return False
    parts = os.fsdecode(relative).split("/")
    for depth in range(1, len(parts) + 1):
        text, name = "/".join(parts[:depth]), parts[depth - 1]
        if any(fnmatch.fnmatchcase(text, p) or fnmatch.fnmatchcase(name, p) for p in patterns):
            return True
    return False


def scan(
    root: str, excludes: Sequence[str] = (), one_file_system: bool = False, threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Entry]:  # fmt: skip
    """Each regular file under ``root`` (a folder), in path order, as it is hashed. While the
    files are large on average, batches go to worker threads (``hashlib`` hashes without the
    GIL); small ones are hashed here, where a thread would cost more than it saves."""
    files = sorted(_walk(os.fsencode(root), excludes, one_file_system))
    first = files[:FIRST_BATCH]  # a small first batch: it tells how large the files are
    batches = [first] + [files[i : i + BATCH] for i in range(len(first), len(files), BATCH)]
    workers = threads or min(8, os.cpu_count() or 1)
    done = hashed = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="manifest") as pool:
        ahead: deque[Future[list[Entry]] | list[tuple[bytes, bytes]]] = deque()
        upcoming = iter(batches)

        def fill() -> None:
            # one batch first, hashed here: its files' sizes decide where the next ones go
            while len(ahead) < (2 * workers if done else 1) and (
                    batch := next(upcoming, None)) is not None:  # fmt: skip
                large = workers > 1 and done > 0 and hashed // done >= LARGE_FILE
                ahead.append(pool.submit(_hash_batch, batch) if large else batch)

        fill()
        while ahead:
            item = ahead.popleft()
            batch = item.result() if isinstance(item, Future) else _hash_batch(item)
            done, hashed = done + len(batch), hashed + sum(e.size for e in batch)
            fill()  # before the consumer gets these: the workers go on meanwhile
            yield from batch
            if progress is not None:
                progress(done, hashed)


def _walk(root: bytes, excludes: Sequence[str], one_file_system: bool) -> Iterator[
        tuple[bytes, bytes]]:  # fmt: skip
    device = os.stat(root).st_dev
    pending = [b""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(root, folder) if folder else root) as entries:
            for item in entries:
                relative = os.path.join(folder, item.name) if folder else item.name
                if excluded(relative, excludes):
                    continue
                if item.is_dir(follow_symlinks=False):
                    if not one_file_system or item.stat(follow_symlinks=False).st_dev == device:
                        pending.append(relative)
                elif item.is_file(follow_symlinks=False):
                    yield relative, item.path


def _hash_batch(batch: list[tuple[bytes, bytes]]) -> list[Entry]:
    out = []
    for relative, path in batch:
        entry = _hash_one(relative, path)
        if entry is not None:
            out.append(entry)
    return out


def _hash_one(relative: bytes, path: bytes) -> Entry | None:
    """The file's entry: its content and attributes as they are when it is read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        try:
            fd = os.open(path, flags | os.O_NOATIME)
        except PermissionError:  # O_NOATIME is only allowed to the file's owner (or root)
            fd = os.open(path, flags)
    except FileNotFoundError:
        return None  # removed since it was listed: it is not part of the folder any more
    except OSError as exc:  # unreadable; a symlink since it was listed (ELOOP), …
        raise ScanError(f"cannot read {os.fsdecode(path)}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None  # replaced by something else since it was listed
        data = os.read(fd, min(info.st_size + 1, BUFFER))  # a small file: one read
        digest = hashlib.sha256(data)
        size = len(data)
        if size == BUFFER:  # a large one: on through the thread's buffer
            if not hasattr(_local, "buffer"):
                _local.buffer = bytearray(BUFFER)
            buffer: bytearray = _local.buffer
            view = memoryview(buffer)
            while n := os.readv(fd, [buffer]):
                digest.update(view[:n])
                size += n
    except OSError as exc:
        raise ScanError(f"cannot read {os.fsdecode(path)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return Entry(relative, digest.hexdigest(), size, stat.S_IMODE(info.st_mode), info.st_uid,
                 info.st_gid, _user(info.st_uid), _group(info.st_gid), info.st_mtime_ns)


@lru_cache(maxsize=256)
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=256)
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""
