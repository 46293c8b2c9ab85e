"""Load a scenario: render (sandboxed Jinja2) → parse (YAML, keeping line marks) → validate
(JSON Schema, then semantics) → a frozen :class:`Scenario`.

Every problem found is collected and raised together as one :class:`ScenarioError`; nothing
is touched outside the file system reads needed to check paths exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.durations import parse_duration, parse_size_mib
from harness.errors import ConfigError, Problem, ScenarioError
from harness.redact import redact
from harness.scenario import model
from harness.scenario.schema import CHECK_KINDS, SCHEMA
from harness.scenario.template import RESERVED, Rendered, render
from harness.yamldoc import (
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
    if not isinstance(data, dict):
        problems.append(Problem(name, 1, "", "a scenario is a YAML mapping (key: value)"))
        raise ScenarioError(problems)
    variant_keys = [k for props in CHECK_KINDS.values() for k in props]
    schema_problems = [
        schema_problem(e, node, name, variant_keys) for e in _VALIDATOR.iter_errors(data)
    ]
    problems += schema_problems
    if not schema_problems:  # the semantic pass relies on the structure being right
        problems += _semantic_problems(data, node, path)
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.field))
        raise ScenarioError(problems)
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
    waits = (["vm", "boot_timeout"], ["vm", "settle_timeout"], ["login", "timeout"])
    for where in (*waits, ["checks_timeout"]):
        p.duration(where, _get(data, where), MAX_WAIT_S)
    memory = data.get("vm", {}).get("memory")
    if memory is not None and not 64 <= parse_size_mib(memory) <= 256 * 1024:
        p.add(["vm", "memory"], f"{memory!r} is out of range (64MiB to 256GiB)")

    backup = data["backup"]
    _backup_problems(p, backup, data.get("vm", {}))
    if "restore_point" in backup:
        try:
            _parse_time(backup["restore_point"])
        except ValueError:
            p.add(["backup", "restore_point"], "not an ISO 8601 time, e.g. 2026-11-22T02:00:00Z")
    p.existing_file(["login", "key_file"], data["login"]["key_file"])
    _check_problems(p, data.get("checks", []))
    steps: set[str] = set()
    for i, step in enumerate(data.get("restore_steps", [])):
        if step["name"] in steps:
            p.add(["restore_steps", i, "name"], f"duplicate step name {step['name']!r}")
        steps.add(step["name"])
        p.duration(["restore_steps", i, "timeout"], step.get("timeout"), MAX_WAIT_S)
    if tests := data.get("testinfra"):
        for i, file in enumerate(tests["files"]):
            p.existing_file(["testinfra", "files", i], file)
        p.duration(["testinfra", "timeout"], tests.get("timeout"), MAX_WAIT_S)
    return p.found


# Which backup keys each kind takes (beyond kind, restore_point and verify_after).
_BACKUP_KEYS = {
    "disk-image": {"path", "format", "sha256"},
    "tar": {"path", "sha256", "target", "restore_timeout"},
    "file": {"path", "sha256", "target", "restore_timeout"},
    "restic": {"repository", "snapshot", "password", "password_file", "environment", "target",
               "restore_timeout"},
    "borg": {"repository", "archive", "password", "password_file", "environment", "target",
             "restore_timeout"},
}  # fmt: skip
_REQUIRED = {"disk-image": ("path",), "tar": ("path", "target"), "file": ("path", "target"),
             "restic": ("repository", "target"), "borg": ("repository", "target")}  # fmt: skip


def is_remote(repository: str) -> bool:
    """``sftp:host:/r``, ``s3:…``, ``ssh://…``, ``user@host:repo``: a colon before any slash."""
    return bool(re.match(r"^[^/]+:", repository))


def _backup_problems(p: _Problems, backup: dict[str, Any], vm: dict[str, Any]) -> None:
    kind = backup.get("kind", "disk-image")
    common = {"kind", "restore_point", "verify_after"}
    for key in sorted(set(backup) - _BACKUP_KEYS[kind] - common):
        p.add(["backup", key], f"not used by a {kind} backup")
    for key in _REQUIRED[kind]:
        if key not in backup:
            p.add(["backup"], f"a {kind} backup needs '{key}'")
    if "path" in backup:
        p.existing_file(["backup", "path"], backup["path"])
    if "repository" in backup and not is_remote(backup["repository"]):
        folder = (p.base / backup["repository"]).resolve()
        if not folder.is_dir():
            p.add(["backup", "repository"], f"no such repository folder: {folder}")
    if "password_file" in backup:
        p.existing_file(["backup", "password_file"], backup["password_file"])
    p.duration(["backup", "restore_timeout"], backup.get("restore_timeout"), MAX_WAIT_S)
    if kind == "disk-image" and "image" in vm:
        p.add(["vm", "image"], "a disk-image backup is itself the VM's disk; drop vm.image")
    elif kind != "disk-image":
        if "image" not in vm:
            p.add(["vm"], f"a {kind} backup is restored into a base VM: set vm.image")
        else:
            p.existing_file(["vm", "image"], vm["image"])


def _check_problems(p: _Problems, checks: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for i, check in enumerate(checks):
        if len([k for k in CHECK_KINDS if k in check]) != 1:
            p.add(["checks", i], f"a check needs exactly one of: {', '.join(CHECK_KINDS)}")
        if check["name"] in seen:
            p.add(["checks", i, "name"], f"duplicate check name {check['name']!r}")
        seen.add(check["name"])
        p.duration(["checks", i, "timeout"], check.get("timeout"), MAX_WAIT_S)
        if "stdout_matches" in check:
            try:
                re.compile(check["stdout_matches"])
            except re.error as exc:
                p.add(["checks", i, "stdout_matches"], f"not a regular expression: {exc}")


def _get(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = data
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _build(data: dict[str, Any], path: Path, rendered: Rendered) -> model.Scenario:
    base = path.parent
    backup, vm, login = data["backup"], data.get("vm", {}), data["login"]
    check_timeout = parse_duration(data.get("checks_timeout", model.DEFAULT_CHECK_TIMEOUT_S))
    checks = []
    for check in data.get("checks", []):
        kind = next(k for k in CHECK_KINDS if k in check)
        options = {k: v for k, v in check.items() if k in CHECK_KINDS[kind] and k != kind}
        checks.append(
            model.CheckSpec(
                name=check["name"],
                kind=kind,
                subject=str(check[kind]),
                options=options,
                timeout_s=parse_duration(check.get("timeout", check_timeout)),
                description=check.get("description", ""),
            )
        )
    tests = data.get("testinfra")
    return model.Scenario(
        name=data["name"],
        description=data.get("description", ""),
        source=path.resolve(),
        backup=_backup(backup, base),
        targets=model.Targets(
            rto_s=parse_duration(data["targets"]["rto"]),
            rpo_s=parse_duration(data["targets"]["rpo"]),
        ),
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
        ),
        login=model.LoginSpec(
            user=login["user"],
            key_file=(base / login["key_file"]).resolve(),
            port=login.get("port", 22),
            timeout_s=parse_duration(login.get("timeout", model.DEFAULT_SSH_TIMEOUT_S)),
        ),
        checks=tuple(checks),
        testinfra=model.TestinfraSpec(
            files=tuple((base / f).resolve() for f in tests["files"]),
            timeout_s=parse_duration(tests.get("timeout", model.DEFAULT_TESTS_TIMEOUT_S)),
        )
        if tests
        else None,
        rendered=redact(rendered.text, rendered.secrets),
        isolation_probe=tuple(data.get("isolation", {}).get("probe", [])),
        restore_steps=tuple(
            model.StepSpec(
                step["name"],
                step["run"],
                step.get("user"),
                parse_duration(step.get("timeout", model.DEFAULT_STEP_TIMEOUT_S)),
            )
            for step in data.get("restore_steps", [])
        ),
        secrets=rendered.secrets,
    )


def _backup(backup: dict[str, Any], base: Path) -> model.BackupSpec:
    repository = backup.get("repository")
    local = None if repository is None or is_remote(repository) else (base / repository).resolve()
    return model.BackupSpec(
        kind=backup.get("kind", "disk-image"),
        path=(base / backup["path"]).resolve() if "path" in backup else None,
        format=backup.get("format", "auto"),
        restore_point=_parse_time(backup["restore_point"]) if "restore_point" in backup else None,
        sha256=backup.get("sha256"),
        verify_after=backup.get("verify_after", "hash"),
        repository=str(local) if local else repository,
        local_repository=local,
        snapshot=backup.get("snapshot"),
        archive=backup.get("archive"),
        password=backup.get("password"),
        password_file=(base / backup["password_file"]).resolve()
        if "password_file" in backup
        else None,
        environment=dict(backup.get("environment", {})),
        target=backup.get("target"),
        restore_timeout_s=parse_duration(
            backup.get("restore_timeout", model.DEFAULT_RESTORE_TIMEOUT_S)
        ),
    )
