"""A folder of the restored guest, as it is: one shell command lists every regular file
under it with its attributes (GNU ``find -printf``) and its SHA-256 (``sha256sum -z``, as many
at once as the guest has CPUs): one round trip over the drill's SSH connection, hashing done
in the guest. Nothing is needed in the guest beyond coreutils and findutils.

The output is NUL-separated records: ``M<size> <mode> <uid> <gid> <mtime> ./<path>`` for each
file's attributes, ``<sha256>  ./<path>`` for its hash, and ``U<name>:<uid>``,
``G<name>:<gid>`` for the guest's user and group names (looked up once here: ``find``'s
``%u`` looks each file's owner up again, which took 16 s for 100,000 files under software
emulation, against 2 s without). This module builds the command and reads its output;
:mod:`harness.remote.commands` runs it."""

from __future__ import annotations

import shlex
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


_NAMES = (
    "{ getent passwd || cat /etc/passwd; } 2>/dev/null | cut -d: -f1,3 | sed 's/^/U/' | "
    "tr '\\n' '\\0'; { getent group || cat /etc/group; } 2>/dev/null | cut -d: -f1,3 | "
    "sed 's/^/G/' | tr '\\n' '\\0'; "
)
# Two hashing processes per CPU: while one waits (on a page, on the pipe) the other hashes;
# measured under TCG on 2 vCPUs: 100,000 files compared in 9.4 s and 9.8 s, against 11.1 s
# with one per CPU.
_CPUS = "n=$(( $(nproc 2>/dev/null || echo 1) * 2 )); "
# Hashes the files named in "$d/list" by as many sha256sum at once as there are CPUs, each
# into its own file in "$d": processes writing one pipe would interleave records.
_HASH = ("xargs -a \"$d/list\" -0 -r -P \"$n\" -n 5000 "
         "sh -c 'sha256sum -z -- \"$@\" >\"$(mktemp -p \"$0\" h.XXXXXX)\"' \"$d\"; "
         "cat \"$d\"/h.* 2>/dev/null; rm -rf \"$d\"")


def command(root: str, one_file_system: bool = False, as_root: bool = True) -> str:
    """The shell command that lists ``root``'s files (run by ``sh -c``)."""
    xdev = " -xdev" if one_file_system else ""
    script = (
        f"cd -- {shlex.quote(root)} 2>/dev/null || exit {NO_FOLDER}; "
        f"printf '' | sha256sum -z >/dev/null 2>&1 || exit {NO_SHA256_Z}; "
        f"find . -maxdepth 0 -printf '' 2>/dev/null || exit {NO_FIND_PRINTF}; "
        + _NAMES + _CPUS +
        "d=$(mktemp -d) || exit 1; "
        # the listing's own folder, if it is under the root, is not listed
        "x=/dev/null; case \"$d\" in \"$PWD\"/*) x=\"./${d#\"$PWD\"/}\";; esac; "
        # one traversal: the attributes to the output, the names to the list to hash
        f"find .{xdev} -path \"$x\" -prune -o -type f -fprint0 \"$d/list\" "
        "-printf 'M%s %m %U %G %T@ %p\\0' && " + _HASH
    )  # fmt: skip
    return _as_root(script, as_root)


def files_command(root: str, as_root: bool = True) -> str:
    """The command that lists the files named on its standard input (NUL-separated, relative
    to ``root``) in the same records as :func:`command`: only what a restore wrote is read,
    however large the folder it wrote into. A file that is not there is left out."""
    script = (
        f"cd -- {shlex.quote(root)} 2>/dev/null || exit {NO_FOLDER}; "
        f"printf '' | sha256sum -z >/dev/null 2>&1 || exit {NO_SHA256_Z}; "
        "d=$(mktemp -d) || exit 1; cat >\"$d/list\"; " + _NAMES + _CPUS +
        "xargs -0 -r -n 2000 stat --printf 'M%s %a %u %g %.9Y %n\\0' -- <\"$d/list\" "
        "2>/dev/null; " + _HASH
    )  # fmt: skip
    return _as_root(script, as_root)


def _as_root(script: str, as_root: bool) -> str:
    return script if as_root else f"sudo -n sh -c {shlex.quote(script)}"


def parse(output: bytes, excludes: tuple[str, ...] = ()) -> dict[bytes, Found]:
    """The files the command listed, by path relative to the folder (excluded ones left
    out, as the manifest left them out). :class:`ValueError` if it is not such a listing."""
    meta: dict[bytes, tuple[int, int, int, int, int]] = {}
    hashes: dict[bytes, str] = {}
    users: dict[int, str] = {}
    groups: dict[int, str] = {}
    for record in output.split(b"\0"):
        kind = record[:1]
        if not record:
            continue
        if kind == b"M":
            size, mode, uid, gid, mtime, path = record[1:].split(b" ", 5)
            seconds, _, frac = mtime.partition(b".")
            meta[_relative(path)] = (int(size), int(mode, 8), int(uid), int(gid),
                                     int(seconds) * 1_000_000_000
                                     + int(frac.ljust(9, b"0")[:9] or b"0"))  # fmt: skip
        elif kind in (b"U", b"G"):
            name, _, number = record[1:].decode(errors="replace").rpartition(":")
            if number.isdigit():
                (users if kind == b"U" else groups).setdefault(int(number), name)
        elif record[64:66] == b"  " and len(record) > 66:
            hashes[_relative(record[66:])] = record[:64].decode()
        else:
            raise ValueError(f"an unexpected record {record[:80]!r}")
    return {
        path: Found(size, mode, uid, gid, users.get(uid, ""), groups.get(gid, ""), mtime,
                    hashes.get(path, ""))
        for path, (size, mode, uid, gid, mtime) in meta.items()
        if not excluded(path, excludes)
    }  # fmt: skip


def _relative(path: bytes) -> bytes:
    return path[2:] if path.startswith(b"./") else path
