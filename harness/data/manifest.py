"""The manifest of a folder, recorded at backup time: every regular file with its SHA-256,
size, mode, owner and mtime, in a line-based format that ``sha256sum -c`` reads as it is.

::

    # restore-drill manifest 1
    # root: /var/www/html
    # created: 2026-12-02T16:40:00+00:00
    # host: web1
    # exclude: *.tmp
    2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae  index.html
    #= size=4 mode=0644 owner=33:33 names=www-data:www-data mtime=1796229119.489279846
    ...
    # end: 1234 files, 5678901 bytes
    # signature: ed25519:<fingerprint> <base64 signature>

Each file is one ``sha256sum`` line (path relative to the root; a name holding ``\\``,
newline or carriage return is escaped and its line starts with ``\\``, exactly as GNU
``sha256sum`` writes it) followed by its attributes on a ``#=`` line: ``sha256sum -c``
skips lines that start with ``#``. Paths are bytes: a name that is not UTF-8 is kept as
the file system has it. The ``end`` line counts what precedes it, so a truncated manifest
is caught. The optional signature covers the SHA-256 of every byte before its line.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harness.signing import fingerprint

MAGIC = b"# restore-drill manifest 1\n"
_ESCAPES = {b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r"}
_UNESCAPES = {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}
_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._$@-]{0,63}$")
_HASH = re.compile(rb"^[0-9a-f]{64}$")


class ManifestError(Exception):
    """A manifest that cannot be read as one: ``line`` is 1-based (0: the whole file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


class Entry(NamedTuple):
    """One regular file: ``path`` relative to the root, as bytes; ``user``/``group`` are
    its owner's names where the system knew them ("" otherwise). A tuple: a manifest holds
    a million of them, made in a tight loop."""

    path: bytes
    sha256: str
    size: int
    mode: int  # permission bits, 0o7777
    uid: int
    gid: int
    user: str
    group: str
    mtime_ns: int


@dataclass(frozen=True)
class Header:
    """What a manifest says of itself."""

    root: str
    created: str = ""
    host: str = ""
    excludes: tuple[str, ...] = ()
    one_file_system: bool = False


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: its header, its files in order, the SHA-256 of the whole file and
    its signature (``signer`` is the key's fingerprint, "" when unsigned)."""

    header: Header
    entries: tuple[Entry, ...]
    sha256: str
    signer: str = ""
    signed_digest: str = field(default="", repr=False)  # what the signature covers
    signature: bytes = field(default=b"", repr=False)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def check_signature(self, trusted: Ed25519PublicKey | None) -> str | None:
        """None if the manifest is signed by ``trusted``; else what is wrong. Without a
        trusted key nothing is proven: say so (a swapped manifest can carry its own key)."""
        if trusted is None:
            return None
        if not self.signer:
            return "the manifest is not signed, and the scenario names a public key"
        wanted = fingerprint(trusted)
        if self.signer != wanted:
            return f"the manifest is signed by {self.signer}, not by the scenario's key {wanted}"
        try:
            trusted.verify(self.signature, _signed_text(self.signed_digest))
        except InvalidSignature:
            return "the manifest's signature does not match its content (changed after signing)"
        return None


def escape(path: bytes) -> tuple[bytes, bool]:
    """``path`` as ``sha256sum`` writes it, and whether the line needs its ``\\`` mark."""
    if b"\\" not in path and b"\n" not in path and b"\r" not in path:
        return path, False
    return re.sub(rb"[\\\n\r]", lambda m: _ESCAPES[m.group()], path), True


def unescape(text: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        char = match.group(1)
        if char not in _UNESCAPES:
            raise ValueError(f"unknown escape \\{char.decode(errors='replace')}")
        return _UNESCAPES[char]

    return re.sub(rb"\\(.)", one, text, flags=re.DOTALL)


def entry_lines(entry: Entry) -> bytes:
    """The two lines of one file."""
    name, marked = escape(entry.path)
    seconds, ns = divmod(entry.mtime_ns, 1_000_000_000)
    attrs = (f"#= size={entry.size} mode={entry.mode:04o} owner={entry.uid}:{entry.gid}"
             f"{_names(entry.user, entry.group)} mtime={seconds}.{ns:09d}\n")  # fmt: skip
    return (b"\\" if marked else b"") + entry.sha256.encode() + b"  " + name + b"\n" + \
        attrs.encode()


@lru_cache(maxsize=1024)
def _names(user: str, group: str) -> str:
    """`` names=USER:GROUP`` when both are plain names (never a space or a colon)."""
    return f" names={user}:{group}" if _NAME.match(user) and _NAME.match(group) else ""


def write(
    out: BinaryIO, header: Header, entries: Iterable[Entry], key: Ed25519PrivateKey | None = None
) -> tuple[int, int, str]:
    """Write the manifest to ``out`` as ``entries`` come; files, bytes and the SHA-256 of
    what was written (the signature line included)."""
    digest = hashlib.sha256()

    def put(data: bytes) -> None:
        digest.update(data)
        out.write(data)

    put(MAGIC)
    put(_header_line("root", header.root))
    for name, value in (("created", header.created), ("host", header.host)):
        if value:
            put(_header_line(name, value))
    for pattern in header.excludes:
        put(_header_line("exclude", pattern))
    if header.one_file_system:
        put(b"# one-file-system: yes\n")
    files = total = 0
    for entry in entries:
        put(entry_lines(entry))
        files, total = files + 1, total + entry.size
    put(f"# end: {files} files, {total} bytes\n".encode())
    if key is not None:
        signed = digest.hexdigest()
        sig = base64.b64encode(key.sign(_signed_text(signed))).decode()
        put(f"# signature: {fingerprint(key.public_key())} {sig}\n".encode())
    return files, total, digest.hexdigest()


def parse(data: bytes) -> Manifest:
    """Read a manifest; :class:`ManifestError` names the first line that is wrong."""
    if not data.startswith(MAGIC):
        raise ManifestError(1, "not a restore-drill manifest (its first line must be "
                               f"{MAGIC.decode().strip()!r})")  # fmt: skip
    meta: dict[str, list[str]] = {}
    entries: list[Entry] = []
    digest = hashlib.sha256()
    pending: tuple[bytes, str, int] | None = None  # a file line waiting for its #= line
    end: tuple[int, int] | None = None
    signer, signature, signed_digest = "", b"", ""
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise ManifestError(len(lines), "the manifest does not end with a newline (truncated?)")
    for number, line in enumerate(lines[:-1], 1):
        if signer:
            raise ManifestError(number, "text after the signature line")
        if line.startswith(b"# signature: "):
            if end is None:
                raise ManifestError(number, "a signature before the end line")
            signer, signature = _signature_line(number, line)
            signed_digest = digest.hexdigest()
        elif end is not None:
            raise ManifestError(number, "text after the end line")
        elif line.startswith(b"#= "):
            if pending is None:
                raise ManifestError(number, "attributes without a file line before them")
            entries.append(_entry(number, pending, line))
            pending = None
        elif pending is not None:
            raise ManifestError(number, "a file line without its #= attributes line")
        elif line.startswith(b"# end: "):
            end = _end_line(number, line)
        elif line.startswith(b"#"):
            key, _, value = line[2:].decode(errors="replace").partition(": ")
            meta.setdefault(key, []).append(value)
        else:
            pending = (*_file_line(number, line), number)
        if not signer:
            digest.update(line + b"\n")
    if pending is not None:
        raise ManifestError(pending[2], "a file line without its #= attributes line")
    if end is None:
        raise ManifestError(len(lines) - 1, "no end line: the manifest is incomplete")
    files, total = end
    if files != len(entries) or total != sum(e.size for e in entries):
        raise ManifestError(0, f"the end line says {files} files, {total} bytes; the manifest "
                               f"lists {len(entries)} files, {sum(e.size for e in entries)} "
                               "bytes")  # fmt: skip
    if "root" not in meta:
        raise ManifestError(0, "no root line")
    header = Header(meta["root"][0], _first(meta, "created"), _first(meta, "host"),
                    tuple(meta.get("exclude", ())), _first(meta, "one-file-system") == "yes")
    return Manifest(header, tuple(entries), hashlib.sha256(data).hexdigest(), signer,
                    signed_digest, signature)  # fmt: skip


def _signed_text(digest: str) -> bytes:
    return f"restore-drill manifest sha256:{digest}".encode()


def _header_line(name: str, value: str) -> bytes:
    if "\n" in value or "\r" in value:
        raise ValueError(f"a manifest's {name} cannot hold a line break")
    return f"# {name}: {value}\n".encode()


def _first(meta: dict[str, list[str]], key: str) -> str:
    return meta.get(key, [""])[0]


def _file_line(number: int, line: bytes) -> tuple[bytes, str]:
    marked = line.startswith(b"\\")
    body = line[1:] if marked else line
    sha, sep, name = body[:64], body[64:66], body[66:]
    if not _HASH.match(sha) or sep != b"  " or not name:
        raise ManifestError(number, "not a file line (64 hex digits, two spaces, a path)")
    if marked:
        try:
            name = unescape(name)
        except ValueError as exc:
            raise ManifestError(number, str(exc)) from None
    if name.startswith(b"/") or b"\0" in name or b".." in name.split(b"/"):
        raise ManifestError(number, "a path must be relative to the root, without '..'")
    return name, sha.decode()


def _entry(number: int, pending: tuple[bytes, str, int], line: bytes) -> Entry:
    path, sha, _ = pending
    fields = dict(part.partition("=")[::2] for part in line[3:].decode().split(" "))
    try:
        uid, gid = (int(x) for x in fields["owner"].split(":"))
        user, _, group = fields.get("names", ":").partition(":")
        seconds, _, frac = fields["mtime"].partition(".")
        return Entry(path, sha, int(fields["size"]), int(fields["mode"], 8), uid, gid, user,
                     group, int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]))
    except (KeyError, ValueError):
        raise ManifestError(number, "an attributes line needs size=, mode=, owner=UID:GID "
                                    "and mtime=") from None  # fmt: skip


def _end_line(number: int, line: bytes) -> tuple[int, int]:
    match = re.fullmatch(rb"# end: (\d+) files, (\d+) bytes", line)
    if match is None:
        raise ManifestError(number, "the end line must read '# end: N files, B bytes'")
    return int(match.group(1)), int(match.group(2))


def _signature_line(number: int, line: bytes) -> tuple[str, bytes]:
    parts = line.decode(errors="replace").split(" ")
    if len(parts) != 4 or not parts[2].startswith("ed25519:"):
        raise ManifestError(number, "the signature line must read "
                                    "'# signature: ed25519:FINGERPRINT BASE64'")  # fmt: skip
    try:
        return parts[2], base64.b64decode(parts[3], validate=True)
    except ValueError:
        raise ManifestError(number, "the signature is not base64") from None
