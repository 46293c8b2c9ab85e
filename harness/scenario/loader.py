"""Load a scenario: render (sandboxed Jinja2) → parse (YAML, keeping line marks) → validate
(JSON Schema, then semantics) → a frozen :class:`Scenario`.

Every problem found is collected and raised together as one :class:`ScenarioError`; nothing
is touched outside the file system reads needed to check paths exist.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.durations import parse_duration, parse_size_mib
from harness.errors import ConfigError, Problem, ScenarioError
from harness.kinds import DEFAULT_KIND, REGISTRY
from harness.redact import redact
from harness.scenario import model
from harness.scenario.schema import CHECK_COMMON, CHECK_KINDS, SCHEMA, check_kinds
from harness.scenario.template import RESERVED, Rendered, render
from harness.signing import load_public
from harness.yamldoc import (
    NOT_TEXT,
    duplicate_keys,
    field_name,
    line_of,
    parse_document,
    schema_problem,
)

MAX_FILE_BYTES = 1024 * 1024
MAX_RTO_S = 30 * 86400.0
MAX_RPO_S = 10 * 365 * 86400.0
MAX_WAIT_S = 24 * 3600.0

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def parse_vars(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` from ``--var`` into a dict; bad pairs are a config error."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ConfigError(f"--var {pair!r}: write key=value with key a plain identifier")
        if key in RESERVED:
            raise ConfigError(f"--var {key}: '{key}' is reserved in scenario templates")
        result[key] = value
    return result


def load_scenario(path: Path, variables: Mapping[str, str] | None = None) -> model.Scenario:
    """Load and validate ``path``; raise :class:`ScenarioError` listing every problem."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError([Problem(name, None, "", "file is larger than 1 MiB")])
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Problem(name, None, "", "no such scenario file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem(name, None, "", f"cannot read: {exc}")]) from None

    rendered = render(source, path, variables or {})
    if isinstance(rendered, Problem):
        raise ScenarioError([rendered])
    node, data = parse_document(rendered.text, name)
    problems = duplicate_keys(node, name)
    if not isinstance(data, dict) or any(p.message == NOT_TEXT for p in problems):
        if isinstance(data, dict):  # the schema cannot judge keys that are not text
            raise ScenarioError(problems)
        problems.append(Problem(name, 1, "", "a scenario is a YAML mapping (key: value)"))
        raise ScenarioError(problems)
    variant_keys = [k for props in CHECK_KINDS.values() for k in props]
    errors = list(_VALIDATOR.iter_errors(data))
    said = [p for e in errors if (p := schema_problem(e, node, name, variant_keys))]
    problems += said
    # The semantic pass relies on the structure being right; an error left unsaid is an
    # option of another check kind, which that pass names (see _check_problems).
    if not said:
        problems += _semantic_problems(data, node, path)
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.field))
        # No secret in any message: a value from secret() is masked wherever it would show.
        raise ScenarioError([replace(p, message=redact(p.message, rendered.secrets))
                             for p in problems])  # fmt: skip
    return _build(data, path, rendered)


class _Problems:
    """Collects semantic problems, locating each by its field path in the YAML tree."""

    def __init__(self, node: yaml.Node, path: Path) -> None:
        self.node, self.name, self.base = node, str(path), path.parent
        self.found: list[Problem] = []

    def add(self, where: Sequence[Any], message: str) -> None:
        self.found.append(Problem(self.name, line_of(self.node, where), field_name(where), message))

    def duration(self, where: Sequence[Any], value: Any, maximum: float) -> None:
        if value is None:
            return
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.add(where, str(exc))
            return
        if seconds <= 0 or seconds > maximum:
            self.add(where, f"{value!r} is out of range (0 to {maximum / 86400:g} days)")

    def unique_names(self, where: Sequence[Any], items: list[dict[str, Any]], what: str) -> None:
        """Each item's ``name`` at most once; a repeat is located at its own ``name``."""
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item["name"] in seen:
                self.add([*where, i, "name"], f"duplicate {what} name {item['name']!r}")
            seen.add(item["name"])

    def existing_file(self, where: Sequence[Any], value: str) -> Path | None:
        file = (self.base / value).resolve()
        if not file.is_file():
            self.add(where, f"no such file: {file}")
            return None
        if not os.access(file, os.R_OK):
            self.add(where, f"{file} is not readable")
            return None
        return file


def _semantic_problems(data: dict[str, Any], node: yaml.Node, path: Path) -> list[Problem]:
    """What the schema cannot say: ranges of durations, files that exist, unique names."""
    p = _Problems(node, path)
    p.duration(["targets", "rto"], data["targets"]["rto"], MAX_RTO_S)
    p.duration(["targets", "rpo"], data["targets"]["rpo"], MAX_RPO_S)
    p.duration(["checks_timeout"], data.get("checks_timeout"), MAX_WAIT_S)
    views = _machine_views(p, data)
    for where, machine in views:
        _machine_problems(p, where, machine)
    _network_problems(p, data.get("network", {}), views)
    names = [m["name"] for _, m in views]
    _check_problems(p, data.get("checks", []), names)
    if tests := data.get("testinfra"):
        for i, file in enumerate(tests["files"]):
            p.existing_file(["testinfra", "files", i], file)
        p.duration(["testinfra", "timeout"], tests.get("timeout"), MAX_WAIT_S)
        if tests.get("machine") not in (None, *names):
            p.add(["testinfra", "machine"], f"no machine named {tests['machine']!r}")
    return p.found


Where = list[Any]


def machine_dicts(data: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    """Each machine with the top-level defaults applied (its vm merged over the top-level
    vm; its login, if any, replacing the top-level one), and where it is in the file."""
    top_vm, top_login = data.get("vm", {}), data.get("login")
    if "machines" not in data:
        return [
            (
                [],
                {
                    "name": "main",
                    "backup": data.get("backup"),
                    "vm": top_vm,
                    "login": top_login,
                    "restore_steps": data.get("restore_steps", []),
                    "address": data.get("address"),
                    "expect": data.get("expect"),
                    "scan": data.get("scan"),
                },
            )
        ]
    return [
        (["machines", i], {**m, "vm": {**top_vm, **m.get("vm", {})},
                           "login": m.get("login", top_login)})
        for i, m in enumerate(data["machines"])
    ]  # fmt: skip


def _machine_views(p: _Problems, data: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    """The machines complete enough to check further; what is missing is a problem."""
    if "machines" in data:
        for key in ("backup", "restore_steps", "address", "expect", "scan"):
            if key in data:
                p.add([key], f"with machines:, each machine has its own (machines[].{key})")
        _dependency_problems(p, data["machines"])
    else:
        for key in ("backup", "login"):  # vm: every field has a default
            if key not in data:
                p.add([], f"'{key}' is a required property (or use machines: for several VMs)")
    views = []
    for where, machine in machine_dicts(data):
        if machine["backup"] is None:
            continue  # reported above
        if machine["login"] is None:
            p.add(where, "needs a login (here or at the top level)")
            continue
        views.append((where, machine))
    return views


def _network_problems(
    p: _Problems, network: dict[str, Any], views: list[tuple[Where, dict[str, Any]]]
) -> None:  # fmt: skip
    """Addresses and subnets that parse, addresses inside a stated subnet, none twice."""
    subnets = []
    for i, subnet in enumerate(network.get("subnets", [])):
        try:
            net = ipaddress.IPv4Network(subnet["cidr"])
        except ValueError as exc:
            p.add(["network", "subnets", i, "cidr"], f"not an IPv4 subnet: {exc}")
            continue
        if net.prefixlen > 30:
            p.add(["network", "subnets", i, "cidr"], "too small for a lab (at most /30)")
        if "gateway" in subnet:
            try:
                gateway = ipaddress.IPv4Address(subnet["gateway"])
            except ValueError:
                p.add(["network", "subnets", i, "gateway"], "not an IPv4 address")
                continue
            if gateway not in net or gateway in (net.network_address, net.broadcast_address):
                p.add(["network", "subnets", i, "gateway"], f"not a host address of {net}")
        subnets.append(net)
    used: dict[str, str] = {}
    for where, machine in views:
        if machine.get("address") is None:
            continue
        at = [*where, "address"]
        try:
            address = ipaddress.IPv4Interface(machine["address"])
        except ValueError:
            p.add(at, "not an IPv4 address with its prefix, e.g. 192.168.10.20/24")
            continue
        if "/" not in machine["address"]:
            p.add(at, f"give its prefix too, e.g. {address.ip}/24")
        elif address.ip in (address.network.network_address, address.network.broadcast_address):
            p.add(at, f"not a host address of {address.network}")
        elif subnets and not any(address.ip in net for net in subnets):
            p.add(at, "in none of network.subnets")
        if str(address.ip) in used:
            p.add(at, f"{address.ip} is also {used[str(address.ip)]}'s address")
        used[str(address.ip)] = machine["name"]


def _dependency_problems(p: _Problems, machines: list[dict[str, Any]]) -> None:
    p.unique_names(["machines"], machines, "machine")
    names = [m["name"] for m in machines]
    hostnames: set[str] = set()
    for i, machine in enumerate(machines):
        for j, dep in enumerate(machine.get("depends_on", [])):
            if dep not in names or dep == machine["name"]:
                p.add(["machines", i, "depends_on", j], f"no other machine named {dep!r}")
        for j, host in enumerate(machine.get("hostnames", [])):
            if host in hostnames:
                p.add(["machines", i, "hostnames", j], f"{host!r} names two machines")
            hostnames.add(host)
    try:
        start_order(machines)
    except ValueError as exc:
        p.add(["machines"], str(exc))


def start_order(machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Machines with their dependencies first (file order otherwise); a cycle is an error."""
    known = {m["name"] for m in machines}
    order: list[dict[str, Any]] = []
    started: set[str] = set()
    pending = list(machines)
    while pending:
        ready = next((m for m in pending
                      if all(d in started or d not in known for d in m.get("depends_on", []))),
                     None)  # fmt: skip
        if ready is None:
            cycle = ", ".join(m["name"] for m in pending)
            raise ValueError(f"depends_on has a cycle among: {cycle}")
        order.append(ready)
        started.add(ready["name"])
        pending.remove(ready)
    return order


def _machine_problems(p: _Problems, where: Where, machine: dict[str, Any]) -> None:
    vm, login = machine["vm"], machine["login"]
    for key in ("boot_timeout", "settle_timeout"):
        p.duration([*where, "vm", key], vm.get(key), MAX_WAIT_S)
    p.duration([*where, "login", "timeout"], login.get("timeout"), MAX_WAIT_S)
    if login.get("create_user") and not login.get("inject_key"):
        p.add([*where, "login", "create_user"], "needs inject_key: true (the user is created "
                                                "in the lab copy, for the injected key)")
    memory = vm.get("memory")
    if memory is not None and not 64 <= parse_size_mib(memory) <= 256 * 1024:
        p.add([*where, "vm", "memory"], f"{memory!r} is out of range (64MiB to 256GiB)")
    backup = machine["backup"]
    _backup_problems(p, where, backup, vm)
    if backup.get("restore") == "system":
        if machine.get("address"):
            p.add([*where, "address"], "not with restore: system: the rescue system and the "
                                       "rebuilt one take the lab's DHCP")  # fmt: skip
        if login.get("create_user"):
            p.add([*where, "login", "create_user"], "not with restore: system: the user must "
                                                    "exist in the backup")  # fmt: skip
    if "restore_point" in backup:
        try:
            _parse_time(backup["restore_point"])
        except ValueError:
            p.add([*where, "backup", "restore_point"],
                  "not an ISO 8601 time, e.g. 2026-11-22T02:00:00Z")  # fmt: skip
    p.existing_file([*where, "login", "key_file"], login["key_file"])
    for at, expect in expect_items(where, machine):
        p.existing_file([*at, "manifest"], expect["manifest"])
        p.duration([*at, "timeout"], expect.get("timeout"), MAX_WAIT_S)
        if "public_key" in expect:
            public = p.existing_file([*at, "public_key"], expect["public_key"])
            try:
                if public is not None:
                    load_public(public.read_bytes(), str(public))
            except ConfigError as exc:
                p.add([*at, "public_key"], str(exc))
    if machine.get("scan"):
        _scan_problems(p, [*where, "scan"], machine["scan"], backup)
    steps = machine.get("restore_steps", [])
    p.unique_names([*where, "restore_steps"], steps, "step")
    for i, step in enumerate(steps):
        p.duration([*where, "restore_steps", i, "timeout"], step.get("timeout"), MAX_WAIT_S)


def _scan_problems(p: _Problems, at: Where, scan: dict[str, Any], backup: dict[str, Any]
                   ) -> None:  # fmt: skip
    """The signatures exist (and YARA rules compile) before anything starts; a restore
    point the scan cannot read is refused here."""
    p.duration([*at, "timeout"], scan.get("timeout"), MAX_WAIT_S)
    kind = backup.get("kind", DEFAULT_KIND)
    if kind == "pgbackrest":
        p.add([*at], "not for a pgBackRest backup (its files are compressed database pages, "
                     "not a file system to scan)")  # fmt: skip
    if is_remote(backup.get("repository", "")):
        p.add([*at], "not for a remote repository (the scan reads the restore point on "
                     "this host)")  # fmt: skip
    if "clamav" in scan:
        database = (p.base / scan["clamav"]["database"]).resolve()
        if not database.exists():
            p.add([*at, "clamav", "database"], f"no such file or folder: {database}")
    rules = [p.existing_file([*at, "yara", "rules", i], r)
             for i, r in enumerate(scan.get("yara", {}).get("rules", []))]  # fmt: skip
    if rules and all(rules):
        from harness.scan.yara_rules import Yara

        try:
            Yara([r for r in rules if r is not None])
        except ConfigError as exc:
            p.add([*at, "yara", "rules"], str(exc))


def expect_items(where: Where, machine: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    """A machine's ``expect`` as a list (one mapping or several), each with where it is."""
    expect = machine.get("expect")
    if expect is None:
        return []
    if isinstance(expect, dict):
        return [([*where, "expect"], expect)]
    return [([*where, "expect", i], e) for i, e in enumerate(expect)]


def _integrity_problems(p: _Problems, at: Where, kind: str, backup: dict[str, Any]) -> None:
    """What each kind's integrity check can do, and a check that would write refused."""
    integrity = backup.get("integrity")
    if integrity is None:
        return
    p.duration([*at, "timeout"], integrity.get("timeout"), MAX_WAIT_S)
    if "read_data_subset" in integrity and kind != "restic":
        p.add([*at, "read_data_subset"], "only restic reads a subset of its data")
    if "verify_data" in integrity and kind != "borg":
        p.add([*at, "verify_data"], "only borg check has --verify-data")
    if kind == "borg" and is_remote(backup.get("repository", "")):
        p.add(at, "borg check writes to the repository (its config and a nonce): it is run "
                  "only on a local repository, through a copy-on-write view of it")  # fmt: skip
    if kind == "file" and "path" in backup:
        file = p.base / backup["path"]
        try:
            with file.open("rb") as fh:
                dump = fh.read(5) == b"PGDMP"
        except OSError:
            return  # said at path
        if not dump:
            p.add(at, "the only check of a single file is pg_restore's, for a pg_dump "
                      "archive (custom format); this file is not one")  # fmt: skip


def _pgbackrest_problems(p: _Problems, at: Where, backup: dict[str, Any]) -> None:
    if is_remote(backup.get("repository", "")):
        p.add([*at, "repository"], "a pgBackRest repository is shared into the lab read-only: "
                                   "give its folder on this host (repo1-path)")  # fmt: skip
    if "restore_point" in backup:
        p.add([*at, "restore_point"], "the restore point is what PostgreSQL recovers to; "
                                      "choose it with target_time")  # fmt: skip
    if "target_time" in backup:
        try:
            _parse_time(backup["target_time"])
        except ValueError:
            p.add([*at, "target_time"], "not an ISO 8601 time (2026-12-01T23:30:00+01:00)")
        if "recovery_target" in backup:
            p.add([*at, "recovery_target"], "give target_time or recovery_target, not both")


def is_remote(repository: str) -> bool:
    """``sftp:host:/r``, ``s3:…``, ``ssh://…``, ``user@host:repo``: a colon before any slash."""
    return bool(re.match(r"^[^/]+:", repository))


def _backup_problems(
    p: _Problems, where: Where, backup: dict[str, Any], vm: dict[str, Any]
) -> None:
    kind = backup.get("kind", DEFAULT_KIND)
    common = {"kind", "restore_point", "verify_after"}
    for key in sorted(set(backup) - REGISTRY[kind].keys - common):
        p.add([*where, "backup", key], f"not used by a {kind} backup")
    for key in REGISTRY[kind].required:
        if key not in backup:
            p.add([*where, "backup"], f"a {kind} backup needs '{key}'")
    if "path" in backup and "repository" not in REGISTRY[kind].keys:
        p.existing_file([*where, "backup", "path"], backup["path"])
    elif "path" in backup and not backup["path"].startswith("/"):
        p.add([*where, "backup", "path"], "a snapshot path is absolute, as on the server")
    if kind == "disk-image" and ("path" in backup) == ("disks" in backup):
        p.add([*where, "backup"], "a disk-image backup needs 'path' (one disk) or 'disks' "
                                  "(several), not both")  # fmt: skip
    for i, disk in enumerate(backup.get("disks", [])):
        p.existing_file([*where, "backup", "disks", i, "path"], disk["path"])
    if "disks" in backup and ("format" in backup or "sha256" in backup):
        p.add([*where, "backup", "disks"], "with disks, give each disk its own format; "
                                           "sha256 is for a single file")  # fmt: skip
    if vm.get("secure_boot") and vm.get("firmware") == "bios":
        p.add([*where, "vm", "secure_boot"], "Secure Boot needs UEFI (firmware: uefi or auto)")
    _integrity_problems(p, [*where, "backup", "integrity"], kind, backup)
    if "glob_archives" in backup and "prefix" in backup:
        p.add([*where, "backup", "prefix"], "give glob_archives or prefix, not both")
    if "archive" in backup and ({"glob_archives", "prefix", "host"} & backup.keys()):
        p.add([*where, "backup", "archive"], "a named archive takes no selector "
                                             "(host, glob_archives, prefix)")  # fmt: skip
    if kind == "pgbackrest":
        _pgbackrest_problems(p, [*where, "backup"], backup)
    if "repository" in backup and not is_remote(backup["repository"]):
        folder = (p.base / backup["repository"]).resolve()
        if not folder.is_dir():
            p.add([*where, "backup", "repository"], f"no such repository folder: {folder}")
    if "password_file" in backup:
        p.existing_file([*where, "backup", "password_file"], backup["password_file"])
    p.duration([*where, "backup", "restore_timeout"], backup.get("restore_timeout"), MAX_WAIT_S)
    if backup.get("restore") == "system":
        _system_problems(p, where, backup, vm)
    else:
        for key in ("disk", "rescue_image"):
            if key in vm:
                p.add([*where, "vm", key], "only for a whole-system restore (backup.restore: "
                                           "system)")  # fmt: skip
        if "root" in backup:
            p.add([*where, "backup", "root"], "only with restore: system (files: subpath)")
    if not REGISTRY[kind].restored and "image" in vm:
        p.add([*where, "vm", "image"], f"a {kind} backup is itself the VM's disk; drop vm.image")
    elif REGISTRY[kind].restored and backup.get("restore") != "system":
        if "image" not in vm:
            p.add([*where, "vm"], f"a {kind} backup is restored into a base VM: set vm.image")
        else:
            p.existing_file([*where, "vm", "image"], vm["image"])


def _system_problems(
    p: _Problems, where: Where, backup: dict[str, Any], vm: dict[str, Any]
) -> None:  # fmt: skip
    """A whole-system restore: a blank disk, a rescue image, no base image, BIOS."""
    for key, instead in (("subpath", "root"), ("target", "nothing: the files land at /")):
        if key in backup:
            p.add([*where, "backup", key], f"not with restore: system (use {instead})")
    if "image" in vm:
        p.add([*where, "vm", "image"], "a whole-system restore boots a rescue system beside a "
                                       "blank disk, not a base image: drop vm.image "
                                       "(vm.rescue_image names another rescue system)")
    if "disk" not in vm:
        p.add([*where, "vm"], "a whole-system restore needs vm.disk: {size: 8GiB}")
    if vm.get("secure_boot"):
        p.add([*where, "vm", "secure_boot"], "a whole-system restore rebuilds without Secure "
                                             "Boot (README, 'Bare-metal restore')")  # fmt: skip
    disk = vm.get("disk", {})
    if "size" in disk and not 1024 <= parse_size_mib(disk["size"]) <= 16 * 1024 * 1024:
        p.add([*where, "vm", "disk", "size"], f"{disk['size']!r} is out of range (1GiB to 16TiB)")
    layout = disk.get("layout", "auto")
    if layout != "auto":
        p.existing_file([*where, "vm", "disk", "layout"], layout)
    elif "partitions" in disk:
        p.add([*where, "vm", "disk", "partitions"], "only with a layout file (auto makes one "
                                                    "root partition, and swap if fstab has one)")
    if "rescue_image" in vm:
        p.existing_file([*where, "vm", "rescue_image"], vm["rescue_image"])
    elif not model.default_rescue_image().is_file():
        p.add([*where, "backup", "restore"], f"no rescue image at {model.default_rescue_image()}: "
                                             "run scripts/build-rescue-image, or name one in "
                                             "vm.rescue_image")  # fmt: skip


def _check_problems(p: _Problems, checks: list[dict[str, Any]], machines: list[str]) -> None:
    p.unique_names(["checks"], checks, "check")
    for i, check in enumerate(checks):
        if check.get("machine") not in (None, *machines):
            p.add(["checks", i, "machine"], f"no machine named {check['machine']!r}")
        kinds = check_kinds(check)
        if len(kinds) != 1:
            p.add(["checks", i], f"a check needs exactly one of: {', '.join(CHECK_KINDS)}")
            continue
        options = CHECK_KINDS[kinds[0]]
        listed = ", ".join(k for k in options if k != kinds[0])
        for key in sorted(set(check) - set(options) - set(CHECK_COMMON)):
            p.add(["checks", i, key], f"not an option of a {kinds[0]} check (its options: "
                                      f"{listed})")  # fmt: skip
        p.duration(["checks", i, "timeout"], check.get("timeout"), MAX_WAIT_S)
        if "stdout_matches" in check:
            try:
                re.compile(check["stdout_matches"])
            except re.error as exc:
                p.add(["checks", i, "stdout_matches"], f"not a regular expression: {exc}")


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _build(data: dict[str, Any], path: Path, rendered: Rendered) -> model.Scenario:
    base = path.parent
    check_timeout = parse_duration(data.get("checks_timeout", model.DEFAULT_CHECK_TIMEOUT_S))
    # Checks without ``machine:`` run on the machine first *in the file* (not in start order).
    first = machine_dicts(data)[0][1]["name"]
    checks = []
    for check in data.get("checks", []):
        [kind] = check_kinds(check)
        options = {k: v for k, v in check.items() if k in CHECK_KINDS[kind] and k != kind}
        checks.append(
            model.CheckSpec(
                name=check["name"],
                kind=kind,
                subject=str(check[kind]),
                options=options,
                timeout_s=parse_duration(check.get("timeout", check_timeout)),
                description=check.get("description", ""),
                machine=check.get("machine") or first,
            )
        )
    tests = data.get("testinfra")
    by_name = {m["name"]: m for _, m in machine_dicts(data)}
    machines = [by_name[m["name"]] for m in start_order(list(by_name.values()))]
    return model.Scenario(
        name=data["name"],
        description=data.get("description", ""),
        source=path.resolve(),
        targets=model.Targets(
            rto_s=parse_duration(data["targets"]["rto"]),
            rpo_s=parse_duration(data["targets"]["rpo"]),
        ),
        machines=tuple(_machine(m, base) for m in machines),
        checks=tuple(checks),
        testinfra=model.TestinfraSpec(
            files=tuple((base / f).resolve() for f in tests["files"]),
            timeout_s=parse_duration(tests.get("timeout", model.DEFAULT_TESTS_TIMEOUT_S)),
            machine=tests.get("machine") or first,
        )
        if tests
        else None,
        rendered=redact(rendered.text, rendered.secrets),
        isolation_probe=tuple(data.get("isolation", {}).get("probe", [])),
        network=model.NetworkSpec(
            detect=data.get("network", {}).get("detect", True),
            subnets=tuple(model.Subnet(str(ipaddress.IPv4Network(s["cidr"])), s.get("gateway"))
                          for s in data.get("network", {}).get("subnets", [])),
        ),
        secrets=rendered.secrets,
        primary_name=first,
    )


def _machine(machine: dict[str, Any], base: Path) -> model.Machine:
    vm, login = machine["vm"], machine["login"]
    return model.Machine(
        name=machine["name"],
        backup=_backup(machine["backup"], base),
        vm=model.VmSpec(
            memory_mib=parse_size_mib(vm.get("memory", "1GiB")),
            vcpus=vm.get("vcpus", 2),
            accelerator=vm.get("accelerator", "auto"),
            boot_timeout_s=parse_duration(vm.get("boot_timeout", model.DEFAULT_BOOT_TIMEOUT_S)),
            settle_timeout_s=parse_duration(
                vm.get("settle_timeout", model.DEFAULT_SETTLE_TIMEOUT_S)
            ),
            image=(base / vm["image"]).resolve() if "image" in vm else None,
            image_format=vm.get("image_format", "auto"),
            firmware=vm.get("firmware", "auto"),
            secure_boot=vm.get("secure_boot", False),
            disk=_disk(vm["disk"], base) if "disk" in vm else None,
            rescue_image=(base / vm["rescue_image"]).resolve() if "rescue_image" in vm
            else model.default_rescue_image() if "disk" in vm else None,
        ),
        login=model.LoginSpec(
            user=login["user"],
            key_file=(base / login["key_file"]).resolve(),
            port=login.get("port", 22),
            timeout_s=parse_duration(login.get("timeout", model.DEFAULT_SSH_TIMEOUT_S)),
            password=login.get("password"),
            inject_key=login.get("inject_key", False),
            create_user=login.get("create_user", False),
        ),
        restore_steps=tuple(
            model.StepSpec(
                step["name"],
                step["run"],
                step.get("user"),
                parse_duration(step.get("timeout", model.DEFAULT_STEP_TIMEOUT_S)),
            )
            for step in machine.get("restore_steps", [])
        ),
        depends_on=tuple(machine.get("depends_on", [])),
        hostnames=tuple(machine.get("hostnames", [])),
        address=machine.get("address"),
        expect=tuple(
            model.ExpectSpec(
                manifest=(base / e["manifest"]).resolve(),
                root=_clean_path(e["root"]) if "root" in e else None,
                strict=e.get("strict", False),
                public_key=(base / e["public_key"]).resolve() if "public_key" in e else None,
                ignore=tuple(e.get("ignore", ())),
                timeout_s=parse_duration(e.get("timeout", model.DEFAULT_EXPECT_TIMEOUT_S)),
            )
            for _, e in expect_items([], machine)
        ),
        scan=_scan(machine["scan"], base) if machine.get("scan") else None,
    )


def _scan(scan: dict[str, Any], base: Path) -> model.ScanSpec:
    return model.ScanSpec(
        when=scan.get("when", "after"),
        clamav=(base / scan["clamav"]["database"]).resolve() if "clamav" in scan else None,
        yara=tuple((base / r).resolve() for r in scan.get("yara", {}).get("rules", [])),
        paths=tuple(_clean_path(x) for x in scan.get("paths", ["/"])),
        max_file_size=parse_size_mib(scan.get("max_file_size", "100MiB")) * 1024 * 1024,
        timeout_s=parse_duration(scan.get("timeout", model.DEFAULT_SCAN_TIMEOUT_S)),
    )


def _backup(backup: dict[str, Any], base: Path) -> model.BackupSpec:
    repository = backup.get("repository")
    local = None if repository is None or is_remote(repository) else (base / repository).resolve()
    system = backup.get("restore") == "system"
    inside = backup.get("root" if system else "subpath")
    subpath = _clean_path(inside) if inside is not None else None
    kind = backup.get("kind", DEFAULT_KIND)
    restored = REGISTRY[kind].restored
    file_path = "path" in backup and repository is None
    disks = [((base / d["path"]).resolve(), d.get("format", "auto"))
             for d in backup.get("disks", [])]  # fmt: skip
    return model.BackupSpec(
        kind=kind,
        path=disks[0][0] if disks else (base / backup["path"]).resolve() if file_path else None,
        format=disks[0][1] if disks else backup.get("format", "auto"),
        extra_disks=tuple(disks[1:]),
        restore_point=_parse_time(backup["restore_point"]) if "restore_point" in backup else None,
        sha256=backup.get("sha256"),
        verify_after=backup.get("verify_after", "hash"),
        repository=str(local) if local else repository,
        local_repository=local,
        snapshot=backup.get("snapshot"),
        archive=backup.get("archive"),
        host=backup.get("host"),
        tags=tuple(backup.get("tags", ())),
        snapshot_path=_clean_path(backup["path"]) if "path" in backup and not file_path else None,
        glob_archives=backup["prefix"] + "*" if "prefix" in backup
        else backup.get("glob_archives"),
        subpath=None if subpath == "/" else subpath,
        password=backup.get("password"),
        password_file=(base / backup["password_file"]).resolve()
        if "password_file" in backup
        else None,
        environment=dict(backup.get("environment", {})),
        # Without a target, the files land where they were on the server.
        target=model.SYSTEM_TARGET if system
        else backup.get("target", subpath or "/") if restored else None,
        restore="system" if system else "files",
        restore_timeout_s=parse_duration(
            backup.get("restore_timeout", model.DEFAULT_RESTORE_TIMEOUT_S)
        ),
        integrity=_integrity(backup.get("integrity")),
        stanza=backup.get("stanza"),
        backup_set=backup.get("set"),
        target_time=_parse_time(backup["target_time"]) if "target_time" in backup else None,
        recovery_target=backup.get("recovery_target", "latest"),
        pg_path=_clean_path(backup["pg_path"]) if "pg_path" in backup else None,
        service=backup.get("service", "postgresql"),
    )


def _disk(disk: dict[str, Any], base: Path) -> model.DiskSpec:
    layout = disk.get("layout", "auto")
    return model.DiskSpec(
        size_bytes=parse_size_mib(disk["size"]) * 1024 * 1024,
        layout=None if layout == "auto" else (base / layout).resolve(),
        partitions={_clean_path(k) if k != "swap" else k: v
                    for k, v in disk.get("partitions", {}).items()},
    )  # fmt: skip


def _integrity(spec: dict[str, Any] | None) -> model.IntegritySpec | None:
    if spec is None or not spec.get("check", True):
        return None
    return model.IntegritySpec(
        read_data_subset=spec.get("read_data_subset"),
        verify_data=spec.get("verify_data", False),
        timeout_s=parse_duration(spec.get("timeout", model.DEFAULT_INTEGRITY_TIMEOUT_S)),
    )


def _clean_path(path: str) -> str:
    """An absolute path as written on the server, without ``//``, ``.`` or a trailing ``/``."""
    return posixpath.normpath(path).replace("//", "/")
