"""Every regular file of a file-level restore, hashed on the host as the tar stream passes
through on its way to the guest (no second read of the backup): the stream is fed chunk by
chunk to a tar reader in a thread of its own, which records each file's SHA-256, size,
mode, owner and mtime, under the path the guest's ``tar -x`` gives it.

The guest's copy of those same files is then hashed in the guest (:mod:`.tree`) and the two
compared (:mod:`.compare`): a silent partial restore (a full guest disk, a permission
problem, a member tar skipped) cannot pass."""

from __future__ import annotations

import hashlib
import queue
import tarfile
import threading
from collections.abc import Callable
from typing import IO, cast

from harness.data.manifest import Entry

QUEUE_CHUNKS = 64  # chunks in flight between the sending loop and the reader (≤ 16 MiB)
JOIN_S = 60.0
READ = 1024 * 1024

Placement = Callable[[str], str | None]  # member name → path under the target, or None


class _Chunks:
    """A file object over the chunks put in a queue; ``None`` ends it."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        self.buffer = bytearray()  # deleting from its front is cheap (CPython moves a start)
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self.buffer) < size):
            chunk = self.queue.get()
            if chunk is None:
                self.ended = True
            else:
                self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


class StreamHasher:
    """Feed it the stream (:meth:`feed`), then :meth:`finish` for the files it held."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.chunks = _Chunks()
        self.entries: dict[bytes, Entry] = {}
        self.error = ""
        self.thread = threading.Thread(target=self._read, name="stream-proof", daemon=True)
        self.thread.start()

    def feed(self, chunk: bytes) -> None:
        """One chunk of the stream, as sent to the guest. Never blocks for long: a reader
        that failed takes no more chunks, and the stream goes on without it."""
        if not self.error:
            self._put(chunk)

    def finish(self) -> tuple[list[Entry], str]:
        """The files the stream held, in stream order (the last of a path repeated wins),
        and "" or why the stream could not be read as tar."""
        self._put(None)
        self.thread.join(JOIN_S)
        if self.thread.is_alive():
            return [], "the tar reader did not finish"
        return list(self.entries.values()), self.error

    def _put(self, chunk: bytes | None) -> None:
        while self.thread.is_alive():
            try:
                self.chunks.queue.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue

    def _read(self) -> None:
        try:
            with tarfile.open(fileobj=cast(IO[bytes], self.chunks), mode="r|") as archive:
                for member in archive:
                    self._member(archive, member)
        except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
            self.error = f"the stream could not be read as tar: {exc}"
        finally:
            while not self.chunks.ended:  # take the rest (end-of-archive padding)
                self.chunks.read(READ)

    def _member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        placed = self.placement(member.name)
        if placed is None:
            return
        path = placed.encode("utf-8", "surrogateescape")
        if member.islnk():  # a hard link: the same file as the member it names
            target = self.placement(member.linkname)
            linked = self.entries.get(target.encode("utf-8", "surrogateescape")) if target else None
            if linked is not None:
                self.entries.pop(path, None)
                self.entries[path] = linked._replace(path=path)
            return
        if not member.isreg():
            self.entries.pop(path, None)  # a later member that is not a file replaces it
            return
        digest = hashlib.sha256()
        source = archive.extractfile(member)
        size = 0
        if source is not None:
            while block := source.read(READ):
                digest.update(block)
                size += len(block)
        self.entries.pop(path, None)
        self.entries[path] = Entry(path, digest.hexdigest(), size, member.mode & 0o7777,
                                   member.uid, member.gid, member.uname, member.gname,
                                   int(member.mtime) * 1_000_000_000)  # fmt: skip


def placement(strip: int, members: tuple[str, ...]) -> Placement:
    """Where GNU ``tar -x --strip-components=strip -- members…`` puts a member: its leading
    ``/`` removed, only ``members`` and what is under them, ``strip`` leading components cut."""
    wanted = tuple(m.lstrip("/").rstrip("/") for m in members)

    def place(name: str) -> str | None:
        name = name.lstrip("/")
        if wanted and not any(name == m or name.startswith(f"{m}/") for m in wanted):
            return None
        parts = [p for p in name.split("/") if p][strip:]
        parts = [p for p in parts if p != "."]
        return "/".join(parts) or None

    return place
