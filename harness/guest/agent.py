"""Runs under the system's Python with libguestfs' own binding (Debian: python3-guestfs), as a
child process of the harness: one JSON request on stdin, one JSON answer on stdout. It only
imports the standard library and ``guestfs``, so the harness's virtualenv never needs the
binding and libguestfs stays behind one process boundary (harness/guest/appliance.py).

Requests (``op``):
  inspect  read-only: the operating system and the services enabled at boot, for ``init``,
           and the text of the network configuration files asked for (``network_paths``)
  inject   read-write, on a lab overlay only: let the drill's key log in as ``user``; with
           ``mounts`` (the file systems the reading of the network configuration found on
           the same content) without inspecting the system again

libguestfs boots an appliance of its own; ``tcg`` forces software emulation where KVM cannot
run a guest. Every file the injection touches is reported with its state before and after.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

KEYS_DIR = "/etc/ssh/restore-drill"
KEYS_FILE = f"{KEYS_DIR}/authorized_keys"
DROP_IN = "/etc/ssh/sshd_config.d/00-restore-drill.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"
MARK = "# Added by restore-drill in the lab's copy only (never in the backup)"
WANTS = ("/etc/systemd/system/multi-user.target.wants", "/etc/systemd/system/default.target.wants")


class Refused(Exception):
    """The guest cannot be prepared as asked; the message says why, for the report."""


def open_guest(request: dict[str, Any], readonly: bool) -> tuple[Any, str | None]:
    """The disks' Linux system with its file systems mounted, and its root as libguestfs'
    inspection names it. With ``mounts`` (mount point -> device, as an inspection of the same
    content found them) the inspection (~11 s under software emulation) is skipped and the
    root is None, unless those do not mount a system."""
    import guestfs  # type: ignore[import-not-found]  # the system's binding, not the venv's

    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend("direct")
    if request.get("tcg"):
        g.set_backend_settings(["force_tcg"])
    for disk in request["disks"]:
        g.add_drive_opts(disk["path"], format=disk["format"], readonly=readonly)
    g.launch()
    if request.get("mounts"):
        try:
            mount_all(g, request["mounts"], readonly)
            if g.is_file("/etc/passwd"):
                return g, None
        except RuntimeError:
            pass
        g.umount_all()
    roots = g.inspect_os()
    linux = [r for r in roots if g.inspect_get_type(r) == "linux"]
    if not linux:
        found = ", ".join(g.inspect_get_type(r) for r in roots) or "none"
        raise Refused(f"no Linux system found on the disk (operating systems found: {found})")
    mount_all(g, g.inspect_get_mountpoints(linux[0]), readonly)
    return g, linux[0]


def mount_all(g: Any, mounts: dict[str, str], readonly: bool) -> None:
    """Mount ``mounts``, shortest mount point first. One that does not mount (on a disk not
    added, damaged) is left out, as the system's own boot would; the root raises."""
    mount = g.mount_ro if readonly else g.mount
    for mountpoint in sorted(mounts, key=len):
        try:
            mount(mounts[mountpoint], mountpoint)
        except RuntimeError:
            if mountpoint == "/":
                raise


def system(g: Any, root: str) -> dict[str, Any]:
    facts = {
        "distro": g.inspect_get_distro(root),
        "product": g.inspect_get_product_name(root),
        "version": f"{g.inspect_get_major_version(root)}.{g.inspect_get_minor_version(root)}",
        "hostname": g.inspect_get_hostname(root),
        "root": root,
        "filesystems": dict(g.inspect_get_mountpoints(root)),
    }
    enabled: list[str] = []
    for wants in WANTS:
        if g.is_dir(wants):
            enabled += [n for n in g.ls(wants) if n.endswith(".service")]
    facts["enabled_services"] = sorted(set(enabled))
    return facts


def facts_of(g: Any, path: str) -> dict[str, Any] | None:
    if not g.exists(path):
        return None
    st = g.statns(path)
    out = {"mode": oct(st["st_mode"] & 0o7777), "uid": st["st_uid"], "gid": st["st_gid"],
           "size": st["st_size"]}  # fmt: skip
    if g.is_file(path):
        out["sha256"] = g.checksum("sha256", path)
    return out


class Changes:
    """Every file touched, with its state before and after, and why."""

    def __init__(self, g: Any) -> None:
        self.g = g
        self.before: dict[str, tuple[dict[str, Any] | None, str]] = {}

    def touch(self, path: str, reason: str) -> None:
        if path not in self.before:
            self.before[path] = (facts_of(self.g, path), reason)

    def report(self) -> list[dict[str, Any]]:
        out = []
        for path, (before, reason) in self.before.items():
            after = facts_of(self.g, path)
            action = "added" if before is None else "modified"
            out.append({"path": path, "action": action, "reason": reason, "before": before,
                        "after": after})  # fmt: skip
        return out


def write(g: Any, changes: Changes, path: str, content: str, mode: int, reason: str) -> None:
    changes.touch(path, reason)
    g.write(path, content.encode())
    g.chown(0, 0, path)
    g.chmod(mode, path)


def user_entry(g: Any, user: str) -> list[str] | None:
    passwd: str = g.cat("/etc/passwd")
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            return fields
    return None


def include_first(config: str) -> bool:
    """Whether sshd reads sshd_config.d/*.conf before any setting we need: sshd takes the
    first value it reads of each keyword, so a drop-in read first wins."""
    for line in config.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].lower()
        if keyword == "include" and any("sshd_config.d" in w for w in words[1:]):
            return True
        if keyword in ("permitrootlogin", "pubkeyauthentication", "authorizedkeysfile", "match"):
            return False
    return False


def inject(request: dict[str, Any]) -> dict[str, Any]:
    g, _ = open_guest(request, readonly=False)
    changes = Changes(g)
    notes: list[str] = []
    try:
        user, key = request["user"], request["public_key"].strip()
        if not g.is_file(SSHD_CONFIG):
            raise Refused(f"{SSHD_CONFIG} not found: is OpenSSH's server installed in the backup?")
        entry = user_entry(g, user)
        if entry is None and not request.get("create_user"):
            raise Refused(f"the user {user!r} does not exist in the restored system; set "
                          "login.create_user: true to create it in the lab copy")  # fmt: skip
        if entry is None:
            for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"):
                if g.exists(path):
                    changes.touch(path, f"user {user} created for the drill")
            g.sh(f"useradd --create-home --shell /bin/sh {user}")
            if any(g.is_file(p) for p in ("/usr/bin/sudo", "/bin/sudo")):
                if not g.is_dir("/etc/sudoers.d"):
                    changes.touch("/etc/sudoers.d", "holds the drill user's sudo rule")
                    g.mkdir_p("/etc/sudoers.d")
                write(g, changes, f"/etc/sudoers.d/restore-drill-{user}",
                      f"{MARK}\n{user} ALL=(ALL) NOPASSWD: ALL\n", 0o440,
                      f"the drill's user {user} may run checks as root")  # fmt: skip
                notes.append(f"user {user} created, with a sudo rule")
            else:
                notes.append(f"user {user} created; sudo is not installed in the restored "
                             "system, so checks with user: cannot switch users")  # fmt: skip
        if not g.is_dir(KEYS_DIR):
            changes.touch(KEYS_DIR, "holds the drill's key, apart from every user's own keys")
            g.mkdir_p(KEYS_DIR)
            g.chmod(0o755, KEYS_DIR)
        write(g, changes, KEYS_FILE, f"{key}\n", 0o644,
              "the drill's public key: the only key the lab's sshd accepts from here")
        settings = [MARK, "PubkeyAuthentication yes",
                    f"AuthorizedKeysFile {KEYS_FILE} .ssh/authorized_keys .ssh/authorized_keys2"]
        if user == "root":
            settings.append("PermitRootLogin prohibit-password")
        block = "\n".join(settings) + "\n"
        config = g.cat(SSHD_CONFIG)
        if include_first(config) and g.is_dir("/etc/ssh/sshd_config.d"):
            write(g, changes, DROP_IN, block, 0o644,
                  "sshd reads it first (sshd_config includes sshd_config.d/*.conf at its top)")
        else:
            mode = int((facts_of(g, SSHD_CONFIG) or {"mode": "0o644"})["mode"], 8)
            write(g, changes, SSHD_CONFIG, block + "\n" + config, mode,
                  "settings put first (sshd takes a keyword's first value; the restored "
                  "config does not include sshd_config.d first)")  # fmt: skip
        selinux = g.cat("/etc/selinux/config") if g.is_file("/etc/selinux/config") else ""
        if re.search(r"^\s*SELINUX\s*=\s*(enforcing|permissive)", selinux, re.M):
            write(g, changes, "/.autorelabel", "", 0o644,
                  "SELinux: the added files get their contexts by a relabel at first boot")
            notes.append("SELinux is on: a full relabel runs at first boot (counted in the "
                         "boot phase)")
        return {"changes": changes.report(), "notes": notes}
    finally:
        g.umount_all()
        g.shutdown()
        g.close()


MAX_FILE_BYTES = 256 * 1024
MAX_FILES = 500


def text_files(g: Any, paths: list[str]) -> dict[str, str]:
    """The regular files among ``paths`` and under those that are folders (recursively),
    as text; symlinks followed only inside the guest (libguestfs resolves them in its root)."""
    out: dict[str, str] = {}
    for path in paths:
        if g.is_dir(path, followsymlinks=True):
            names = [f"{path}/{name}" for name in g.find(path)]
        else:
            names = [path]
        for name in names:
            if len(out) >= MAX_FILES:
                return out
            if g.is_file(name, followsymlinks=True) and g.filesize(name) <= MAX_FILE_BYTES:
                out[name] = g.read_file(name).decode("utf-8", errors="replace")
    return out


def inspect(request: dict[str, Any]) -> dict[str, Any]:
    g, root = open_guest(request, readonly=True)
    try:
        assert root is not None  # noqa: S101 - an inspection is never given its mounts
        answer: dict[str, Any] = {"system": system(g, root)}
        if request.get("network_paths"):
            answer["network_files"] = text_files(g, request["network_paths"])
        return answer
    finally:
        g.umount_all()
        g.shutdown()
        g.close()


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        answer = {"inspect": inspect, "inject": inject}[request["op"]](request)
    except Refused as exc:
        answer = {"refused": str(exc)}
    except RuntimeError as exc:  # libguestfs' own errors
        answer = {"error": str(exc)}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
