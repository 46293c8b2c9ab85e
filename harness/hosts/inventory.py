"""The host inventory: the libvirt hosts drills may run on (``run --hosts hosts.yaml``).

::

    hosts:
      - {name: hv1, uri: "qemu+ssh://root@hv1.example/system", slots: 3}
      - name: hv2
        uri: "qemu+ssh://root@hv2.example/system?keyfile=/etc/restore-drill/hv.key"
        slots: 3            # drills at once on this host (default 2)
        memory: 96GiB       # at most this much for drills (default: what libvirt says is free)
        reserve: 2GiB       # left to the host itself (default 1GiB)
        known_hosts: /etc/restore-drill/known_hosts   # its SSH host key (default ~/.ssh/…)
        accelerator: kvm    # auto (default: KVM if its libvirt offers it) | kvm | tcg
        paths: {/srv/backup: /mnt/backup}   # where the controller's backup paths are there

A host is reached by libvirt's own remote protocol and, for what libvirt does not do
(reading the console file, hashing the backup, the guest's SSH), by SSH to the same account
with the same key: it needs libvirtd, sshd and the backup storage, no restore-drill. The
controller keeps the scenarios, the evidence and the ledger. Checked like a scenario: every
problem names the file, line and field (exit 2), nothing is contacted.
"""

from __future__ import annotations

import getpass
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema

from harness.durations import SIZE_PATTERN, parse_size_mib
from harness.errors import ConfigError, Problem, ScenarioError
from harness.remote.jump import Jump
from harness.yamldoc import field_name, line_of, load_mapping

DEFAULT_SLOTS = 2
DEFAULT_RESERVE_MIB = 1024
#: libvirt transports that come with an SSH account on the host (the jump host, hashing)
SSH_SCHEMES = ("qemu+ssh", "qemu+libssh", "qemu+libssh2")
_size = {"type": ["string", "integer"], "pattern": SIZE_PATTERN}
_absolute = {"type": "string", "pattern": "^/"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "restore-drill host inventory",
    "type": "object",
    "additionalProperties": False,
    "required": ["hosts"],
    "properties": {
        "hosts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "uri"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,30}$"},
                    "uri": {"type": "string", "minLength": 1},
                    "slots": {"type": "integer", "minimum": 1, "maximum": 64},
                    "memory": _size,
                    "reserve": _size,
                    "known_hosts": _absolute,
                    "accelerator": {"enum": ["auto", "kvm", "tcg"]},
                    "paths": {
                        "type": "object",
                        "propertyNames": {"pattern": "^/"},
                        "additionalProperties": _absolute,
                    },
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class SshAccess:
    """How the harness itself reaches a remote host: the account and key of its libvirt
    URI, and the host key it must present (pinned: never accepted on first sight)."""

    hostname: str
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path


@dataclass(frozen=True)
class HostSpec:
    """One libvirt host of the inventory."""

    name: str
    uri: str
    slots: int = DEFAULT_SLOTS
    memory_mib: int | None = None  # a cap on what drills use there; None: libvirt's figure
    reserve_mib: int = DEFAULT_RESERVE_MIB
    paths: tuple[tuple[str, str], ...] = ()  # controller path prefix → the host's
    ssh: SshAccess | None = None  # None: this machine's own libvirt
    accelerator: str = "auto"  # a remote host's KVM cannot be probed first: say it here

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    @property
    def jump(self) -> Jump | None:
        """How the harness reaches a remote host over SSH (None: this machine)."""
        ssh = self.ssh
        if ssh is None:
            return None
        return Jump(self.name, ssh.hostname, ssh.port, ssh.user,
                    str(ssh.key_file) if ssh.key_file else None, str(ssh.known_hosts))

    def host_path(self, path: Path) -> Path:
        """Where the host sees a path of the controller (the longest mapped prefix wins)."""
        text = posixpath.normpath(str(path))
        for mine, theirs in sorted(self.paths, key=lambda p: -len(p[0])):
            root = mine.rstrip("/") or "/"
            if text == root or text.startswith(root.rstrip("/") + "/"):
                rest = text[len(root.rstrip("/")):].lstrip("/")  # fmt: skip
                return Path(str(PurePosixPath(theirs) / rest) if rest else theirs)
        return Path(text)


@dataclass(frozen=True)
class Inventory:
    source: Path
    hosts: tuple[HostSpec, ...]

    def named(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise ConfigError(f"{self.source}: no host named {name!r} (it has: "
                          f"{', '.join(h.name for h in self.hosts)})")  # fmt: skip


def local_host(uri: str, slots: int) -> HostSpec:
    """Everything as without an inventory: this machine's libvirt at ``uri``."""
    return HostSpec("local", uri, slots, ssh=None)


def load_inventory(path: Path) -> Inventory:
    """Read and check ``path``; :class:`ScenarioError` lists every problem with its line."""
    name = str(path)
    node, data = load_mapping(path, "the host inventory", _VALIDATOR,
                              "a YAML mapping with a list of hosts")  # fmt: skip
    problems: list[Problem] = []
    hosts: list[HostSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data["hosts"]):

        def problem(key: str, message: str, at: int = i) -> None:
            where = ["hosts", at, key]
            problems.append(Problem(name, line_of(node, where), field_name(where), message))

        if entry["name"] in seen:
            first = seen[entry["name"]] + 1
            problem("name", f"{entry['name']!r} is already the name of host {first}")
        seen.setdefault(entry["name"], i)
        ssh = _ssh_access(entry, problem)
        sizes = {}
        for key in ("memory", "reserve"):
            if key in entry:
                try:
                    sizes[key] = parse_size_mib(entry[key])
                except ValueError as exc:
                    problem(key, str(exc))
        hosts.append(HostSpec(
            name=entry["name"], uri=entry["uri"], slots=entry.get("slots", DEFAULT_SLOTS),
            memory_mib=sizes.get("memory"), reserve_mib=sizes.get("reserve", DEFAULT_RESERVE_MIB),
            paths=tuple((posixpath.normpath(k), posixpath.normpath(v))
                        for k, v in entry.get("paths", {}).items()),
            ssh=ssh, accelerator=entry.get("accelerator", "auto"),
        ))  # fmt: skip
    if problems:
        raise ScenarioError(problems)
    return Inventory(path, tuple(hosts))


def _ssh_access(entry: dict[str, Any], problem: Any) -> SshAccess | None:
    """The SSH account of a remote URI (None for this machine's libvirt), or a problem."""
    uri = entry["uri"]
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        problem("uri", f"not a libvirt URI: {exc}")
        return None
    scheme = parts.scheme
    if scheme in ("qemu", "test") and not parts.hostname:
        if "known_hosts" in entry:
            problem("known_hosts", "only a remote host (qemu+ssh://…) has an SSH host key")
        return None
    if scheme not in SSH_SCHEMES:
        problem("uri", f"{scheme}:// is not supported: restore-drill reaches a host over SSH "
                       "as well (the guests' SSH goes through it, and the backup is hashed "
                       "there), so use qemu+ssh://USER@HOST/system, or qemu:///system for "
                       "this machine")  # fmt: skip
        return None
    if not parts.hostname:
        problem("uri", f"{scheme}:// needs a host name: {scheme}://USER@HOST/system")
        return None
    query = parse_qs(parts.query)
    key = query.get("keyfile", [""])[-1]
    known = entry.get("known_hosts") or query.get("known_hosts", [""])[-1]
    if key and not key.startswith("/"):
        problem("uri", f"keyfile={key}: give the key's absolute path")
    return SshAccess(
        hostname=parts.hostname, port=port or 22,
        user=unquote(parts.username) if parts.username else getpass.getuser(),
        key_file=Path(key) if key else None,
        known_hosts=Path(known) if known else Path.home() / ".ssh" / "known_hosts",
    )  # fmt: skip
