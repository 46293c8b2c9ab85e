"""A tar archive (plain, gzip, zstd, xz, bzip2) or a single file (e.g. a ``pg_dump``),
restored into the base VM at ``backup.target``."""

from __future__ import annotations

from harness.errors import PhaseFailed
from harness.sources.files import FileLevelSource, Inspected, strip_count

# Magic bytes → the command that decompresses to stdout.
_DECOMPRESS = [
    (b"\x1f\x8b", ["gzip", "-dc"], "gzip"),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"], "zstd"),
    (b"\xfd7zXZ\x00", ["xz", "-dc"], "xz"),
    (b"BZh", ["bzip2", "-dc"], "bzip2"),
]


class TarSource(FileLevelSource):
    """``tar -t`` reads the whole archive at verify (a truncated or corrupt one fails there);
    the restore streams it, decompressed on the host (the guest needs only ``tar``)."""

    def _compression(self) -> tuple[list[str], str]:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        with self.spec.path.open("rb") as fh:
            head = fh.read(8)
        for magic, command, name in _DECOMPRESS:
            if head.startswith(magic):
                return command, name
        return ["cat"], "uncompressed"

    member = ""  # the subpath as the archive names it (``var/…``, ``./var/…`` or ``/var/…``)
    _names: dict[str, str]  # restore: system: each name under the root → as the archive has it

    def inspect(self) -> Inspected:
        listing = self.run_tool(["tar", "-tf", str(self.spec.path)])
        _, name = self._compression()
        entries = len(listing.splitlines())
        if self.spec.subpath is not None:
            self.member = _member(listing.splitlines(), self.spec.subpath)
        if self.spec.restore == "system":
            self._names = {self.unrooted(n): n for n in listing.splitlines()}
        return Inspected(f"tar archive ({name}), {entries} entries read",
                         details={"tool": "tar", "entries": str(entries)})  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        listing = self.run_tool(["tar", "-tvf", str(self.spec.path)]).splitlines()
        under = f"{self.member}/" if self.member else ""
        files = [parts[5] for line in listing if line.startswith("-")
                 and len(parts := line.split(None, 5)) == 6
                 and int(parts[2]) <= self.sample_max_bytes
                 and parts[5].startswith(under)]  # fmt: skip
        self._members = {f.removeprefix("./").lstrip("/"): f for f in files[:limit]}
        return list(self._members)

    def file_content(self, path: str) -> bytes:
        return self.tool_bytes(["tar", "-xOf", str(self.spec.path), self._members[path]])

    def system_names(self, paths: tuple[str, ...]) -> set[str]:
        return {n for n in self._names if any(n == p or n.startswith(f"{p}/") for p in paths)}

    def system_file(self, path: str) -> bytes:
        return self.tool_bytes(["tar", "-xOf", str(self.spec.path), self._names[path]])

    def stream_command(self) -> list[str]:
        command, _ = self._compression()
        return [*command, str(self.spec.path)]

    def layout(self) -> tuple[int, tuple[str, ...]]:
        """The whole archive is streamed; the guest's tar takes only the subpath's member."""
        if not self.member:
            return 0, ()
        return strip_count(self.member), (self.member,)


def _member(names: list[str], subpath: str) -> str:
    """How the archive spells ``subpath``: ``tar -czf x /var/www/html`` stores
    ``var/www/html/…``, ``tar -C / -czf x ./var/www/html`` ``./var/www/html/…``."""
    relative = subpath.lstrip("/")
    for form in (relative, f"./{relative}", f"/{relative}"):
        if any(n.rstrip("/") == form or n.startswith(f"{form}/") for n in names):
            return form
    raise PhaseFailed("verify", f"the archive holds nothing under {subpath} (subpath)")


class SingleFileSource(FileLevelSource):
    """One file (a database dump, an export) placed into ``target`` under its own name."""

    def inspect(self) -> Inspected:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        size = self.spec.path.stat().st_size
        return Inspected(f"a single file of {size} bytes",
                         details={"file": self.spec.path.name, "bytes": str(size)})  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        return [self.spec.path.name][:limit]

    def file_content(self, path: str) -> bytes:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        return self.spec.path.read_bytes()

    def stream_command(self) -> list[str]:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        path = self.spec.path
        return ["tar", "-c", "-C", str(path.parent), "--", path.name]

    def integrity_argv(self, location: str) -> list[str]:
        """A pg_dump archive (the loader admits no other file): every block read, the data
        decompressed, SQL written nowhere."""
        return ["pg_restore", "--file=/dev/null", "--", location]

    def integrity_summary(self, output: str) -> str:
        assert self.spec.path is not None  # noqa: S101 - the loader requires it
        listing = self.run_tool(["pg_restore", "--list", "--", str(self.spec.path)], "integrity")
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        return (f"the whole archive read and decompressed, {entries} entries in its table of "
                "contents" + (f" ({super().integrity_summary(output)})" if output.strip()
                              else ""))  # fmt: skip
