"""A folder of the restored guest, as it is: one shell command lists every regular file
under it with its attributes (GNU ``find -printf``) and its SHA-256 (``sha256sum -z``),
compressed when the guest has ``gzip``: one round trip over the drill's SSH connection,
hashing done in the guest. Nothing is needed in the guest beyond coreutils and findutils.

The output is NUL-separated records: ``M<size> <mode> <uid> <gid> <user> <group> <mtime>
./<path>`` for each file's attributes, ``<sha256>  ./<path>`` for its hash. This module builds
the command and reads its output; :mod:`harness.remote.commands` runs it."""

from __future__ import annotations

import shlex
import zlib
from dataclasses import dataclass

from harness.data.scan import excluded

#: Exit codes of :func:`command` that are not a tree: what each means.
NO_FOLDER, NO_SHA256_Z, NO_FIND_PRINTF = 3, 4, 5
FAILURES = {
    NO_FOLDER: "the folder does not exist in the guest",
    NO_SHA256_Z: "the guest's sha256sum cannot write NUL-terminated lines (-z: coreutils "
                 "8.30 or later is needed)",
    NO_FIND_PRINTF: "the guest's find has no -printf (GNU findutils is needed)",
}  # fmt: skip


@dataclass(frozen=True)
class Found:
    """One regular file in the guest. ``sha256`` is "" when the guest could not read it."""

    size: int
    mode: int
    uid: int
    gid: int
    user: str  # "" when the guest has no name for the uid
    group: str
    mtime_ns: int
    sha256: str = ""


def command(root: str, one_file_system: bool = False, as_root: bool = True) -> str:
    """The shell command that lists ``root``'s files (run by ``sh -c``)."""
    xdev = " -xdev" if one_file_system else ""
    script = (
        f"cd -- {shlex.quote(root)} 2>/dev/null || exit {NO_FOLDER}; "
        f"printf '' | sha256sum -z >/dev/null 2>&1 || exit {NO_SHA256_Z}; "
        f"find . -maxdepth 0 -printf '' 2>/dev/null || exit {NO_FIND_PRINTF}; "
        "if command -v gzip >/dev/null 2>&1; then z='gzip -1'; else z=cat; fi; "
        f"{{ find .{xdev} -type f -printf 'M%s %m %U %G %u %g %T@ %p\\0' && "
        f"find .{xdev} -type f -print0 | xargs -0 -r sha256sum -z --; }} | $z"
    )
    return _as_root(script, as_root)


def files_command(root: str, as_root: bool = True) -> str:
    """The command that lists the files named on its standard input (NUL-separated, relative
    to ``root``) in the same records as :func:`command`: only what a restore wrote is read,
    however large the folder it wrote into. A file that is not there is left out."""
    script = (
        f"cd -- {shlex.quote(root)} 2>/dev/null || exit {NO_FOLDER}; "
        f"printf '' | sha256sum -z >/dev/null 2>&1 || exit {NO_SHA256_Z}; "
        "t=$(mktemp) || exit 1; cat >\"$t\"; "
        "if command -v gzip >/dev/null 2>&1; then z='gzip -1'; else z=cat; fi; "
        "{ xargs -0 -r stat --printf 'M%s %a %u %g %U %G %.9Y %n\\0' -- <\"$t\" 2>/dev/null; "
        "xargs -0 -r sha256sum -z -- <\"$t\"; } | $z; rm -f \"$t\""
    )
    return _as_root(script, as_root)


def _as_root(script: str, as_root: bool) -> str:
    return script if as_root else f"sudo -n sh -c {shlex.quote(script)}"


def parse(output: bytes, excludes: tuple[str, ...] = ()) -> dict[bytes, Found]:
    """The files the command listed, by path relative to the folder (excluded ones left
    out, as the manifest left them out). :class:`ValueError` if it is not such a listing."""
    if output[:2] == b"\x1f\x8b":
        try:
            output = zlib.decompress(output, wbits=31)
        except zlib.error as exc:
            raise ValueError(f"not a complete gzip stream ({exc})") from None
    meta: dict[bytes, Found] = {}
    hashes: dict[bytes, str] = {}
    for record in output.split(b"\0"):
        if not record:
            continue
        if record[:1] == b"M":
            path, found = _meta(record)
            meta[path] = found
        elif record[64:66] == b"  " and len(record) > 66:
            hashes[_relative(record[66:])] = record[:64].decode()
        else:
            raise ValueError(f"an unexpected record {record[:80]!r}")
    out = {}
    for path, found in meta.items():
        if excluded(path, excludes):
            continue
        sha = hashes.get(path, "")
        out[path] = found if not sha else Found(**{**found.__dict__, "sha256": sha})
    return out


def _meta(record: bytes) -> tuple[bytes, Found]:
    size, mode, uid, gid, user, group, mtime, path = record[1:].split(b" ", 7)
    seconds, _, frac = mtime.decode().partition(".")
    uid_s, gid_s, user_s, group_s = uid.decode(), gid.decode(), user.decode(), group.decode()
    # a uid without a name: find prints the number, stat "UNKNOWN"
    return _relative(path), Found(
        int(size), int(mode, 8), int(uid_s), int(gid_s),
        "" if user_s in (uid_s, "UNKNOWN") else user_s,
        "" if group_s in (gid_s, "UNKNOWN") else group_s,
        int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]),
    )  # fmt: skip


def _relative(path: bytes) -> bytes:
    return path[2:] if path.startswith(b"./") else path
