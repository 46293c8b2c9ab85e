"""``restore-drill init BACKUP``: a first scenario written for you, from the backup as it is.

The disk image is inspected read-only (libguestfs, through :mod:`.guestfs`): which system it
holds and which services start at boot. Each service we know how to check gets checks that
prove it came back (it runs, it listens, a database answers), each with a comment saying
what it proves. The drill's key is injected into the lab copy (``inject_key: true``), so
production needs no preparation. The result validates and runs as it is.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import qemu_img
from harness.errors import ConfigError, PhaseFailed
from harness.guest.network import inspect
from harness.kinds import BOOTABLE_FORMATS


@dataclass(frozen=True)
class Known:
    """A service we know how to check: its unit, ports, and a command proving it answers."""

    unit: str
    what: str
    ports: tuple[int, ...] = ()
    command: str = ""
    command_user: str = ""
    command_proves: str = ""


KNOWN = {
    "ssh.service": Known("ssh", "OpenSSH server", (22,)),
    "sshd.service": Known("sshd", "OpenSSH server", (22,)),
    "nginx.service": Known("nginx", "nginx web server", (80,)),
    "apache2.service": Known("apache2", "Apache web server", (80,)),
    "httpd.service": Known("httpd", "Apache web server", (80,)),
    "postgresql.service": Known(
        "postgresql", "PostgreSQL", (5432,), "psql -lqt", "postgres",
        "PostgreSQL accepts a connection and lists its databases"),
    "mariadb.service": Known(
        "mariadb", "MariaDB", (3306,), "mysql -e 'show databases'", "",
        "MariaDB accepts a connection and lists its databases"),
    "mysql.service": Known(
        "mysql", "MySQL", (3306,), "mysql -e 'show databases'", "",
        "MySQL accepts a connection and lists its databases"),
    "redis-server.service": Known(
        "redis-server", "Redis", (6379,), "redis-cli ping", "", "Redis answers PONG"),
    "docker.service": Known(
        "docker", "Docker", (), "docker info --format '{{.ServerVersion}}'", "",
        "the Docker daemon answers"),
}  # fmt: skip


@dataclass
class Inspection:
    """What the backup holds, as libguestfs saw it."""

    system: dict[str, Any]
    image: qemu_img.ImageInfo
    known: list[Known] = field(default_factory=list)
    network: str = ""  # what its own network configuration says, in words


def inspect_backup(backup: Path, tcg: Callable[[], bool]) -> Inspection:
    """Read the disk image (read-only); a path that is no disk image is bad input (exit 2).
    ``tcg`` (whether the appliance runs under software emulation) is asked only once the
    path is known to be a disk image: the first answer on a machine probes KVM, which takes
    seconds, and bad input is said at once, with nothing created."""
    if not backup.is_file():
        raise ConfigError(f"{backup}: no such file")
    try:
        with backup.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{backup}: cannot read it ({exc.strerror})") from None
    try:
        image = qemu_img.info(backup)
    except PhaseFailed as exc:
        raise ConfigError(f"{backup}: not a disk image qemu-img can read ({exc})") from None
    if image.format == "raw" and image.virtual_size < 1024 * 1024:
        raise ConfigError(f"{backup}: not a disk image ({image.virtual_size} bytes, no "
                          "image format: too small to hold a system)")  # fmt: skip
    if image.format not in BOOTABLE_FORMATS:
        raise ConfigError(f"{backup}: {image.format} is not a disk image format a lab boots "
                          f"({', '.join(BOOTABLE_FORMATS)}); for a tar, restic or "
                          "borg backup write the scenario by hand (README, 'Kinds of backup')")
    try:
        answer, network = inspect([(backup, image.format)], tcg(), "init")
    except PhaseFailed as exc:
        raise ConfigError(f"{backup}: {exc}") from None
    system: dict[str, Any] = answer["system"]
    known = [KNOWN[s] for s in system.get("enabled_services", []) if s in KNOWN]
    return Inspection(system, image, known, network.summary())


@dataclass
class Draft:
    """What a first scenario says: the backup, the VM, and what to check."""

    name: str
    found: str  # what inspection found, for the header comment
    backup: list[str]  # the backup: section's lines
    vm: list[str]  # the vm: section's lines
    known: list[Known]
    files: list[tuple[str, str]] = field(default_factory=list)  # restored (path, sha256)
    warnings: list[str] = field(default_factory=list)  # e.g. a shared repository, no host
    network: str = ""  # the booted disk's own network configuration, in words
    database: bool = False  # a PostgreSQL recovery: check that it ended


def disk_image_draft(backup: Path, inspection: Inspection, name: str) -> Draft:
    system = inspection.system
    return Draft(
        name, f"{_system_name(system)} (host name {system.get('hostname') or 'unknown'})",
        [f"  path: {json.dumps(str(backup.resolve()))}",
         f"  format: {inspection.image.format}",
         "  # restore_point: 2026-01-01T02:00:00Z   # default: the file's modification time"],
        [], inspection.known, network=inspection.network,
    )  # fmt: skip


def file_level_draft(
    kind: str, location: str, password_file: Path | None, target: str | None, base_image: Path,
    tcg: Callable[[], bool], name: str, host: str | None = None, subpath: str | None = None,
) -> Draft:  # fmt: skip
    """A tar/file/restic/borg backup restored into ``base_image``: the backup's own
    metadata says what it holds (its newest snapshot or archive), the base image which
    services run."""
    from harness.scenario.loader import is_remote
    from harness.scenario.model import BackupSpec, VmSpec
    from harness.sources import open_source
    from harness.sources.files import FileLevelSource

    local = None if is_remote(location) else Path(location)
    if local is not None and not local.exists():
        raise ConfigError(f"{location}: no such file or repository folder")
    is_file = kind in ("tar", "file")
    spec = BackupSpec(
        kind=kind, path=local.resolve() if is_file and local else None, format="auto",
        restore_point=None, sha256=None, verify_after="hash",
        repository=None if is_file else (str(local.resolve()) if local else location),
        local_repository=None if is_file or local is None else local.resolve(),
        password_file=password_file.resolve() if password_file else None,
        target=target or subpath or "/", host=host, subpath=subpath,
    )  # fmt: skip
    vm = VmSpec(memory_mib=1024, vcpus=2, accelerator="auto", boot_timeout_s=600,
                settle_timeout_s=300, image=base_image.resolve())  # fmt: skip
    source = open_source(spec, vm)
    assert isinstance(source, FileLevelSource)  # noqa: S101 - every kind but disk-image is
    try:
        facts = source.inspect()
        files = [(f, hashlib.sha256(source.file_content(f)).hexdigest())
                 for f in source.sample_files(3)]  # fmt: skip
    except PhaseFailed as exc:
        raise ConfigError(f"{location}: {exc}") from None
    base = inspect_backup(base_image, tcg)
    where = "path" if is_file else "repository"
    lines = [f"  kind: {kind}", f"  {where}: {json.dumps(str(spec.path or spec.repository))}"]
    if password_file:
        lines.append(f"  password_file: {json.dumps(str(password_file.resolve()))}")
    if host:
        lines.append(f"  host: {json.dumps(host)}   # the newest snapshot of this server")
    lines += [f"  # {w}" for w in facts.warnings]
    if subpath:
        lines.append(f"  subpath: {json.dumps(subpath)}   # this folder of the backup only")
    lines.append(f"  target: {json.dumps(source.target)}   # where its files land in the VM")
    guest_paths = [(source.restored_path(f), sha) for f, sha in files]
    return Draft(
        name, f"{facts.summary}; restored into {_system_name(base.system)}",
        lines, [f"  image: {json.dumps(str(base_image.resolve()))}   # booted, never changed"],
        base.known, guest_paths, list(facts.warnings), base.network,
    )  # fmt: skip


def pgbackrest_draft(location: str, stanza: str | None, base_image: Path,
                     tcg: Callable[[], bool], name: str) -> Draft:  # fmt: skip
    """A pgBackRest stanza recovered into ``base_image`` to the end of its archived WAL: the
    repository says which set and data directory, the base image which services run."""
    from harness.scenario.model import BackupSpec, VmSpec
    from harness.sources.pgbackrest import PgBackRestSource

    repository = Path(location)
    if not (repository / "backup").is_dir():
        raise ConfigError(f"{location}: not a pgBackRest repository (no backup/ folder)")
    spec = BackupSpec(kind="pgbackrest", path=None, format="auto", restore_point=None,
                      sha256=None, verify_after="hash", repository=str(repository.resolve()),
                      local_repository=repository.resolve(), target="/", stanza=stanza)  # fmt: skip
    vm = VmSpec(memory_mib=1024, vcpus=2, accelerator="auto", boot_timeout_s=600,
                settle_timeout_s=300, image=base_image.resolve())  # fmt: skip
    source = PgBackRestSource(spec, vm)
    try:
        facts = source.inspect()
    except PhaseFailed as exc:
        raise ConfigError(f"{location}: {exc}") from None
    base = inspect_backup(base_image, tcg)
    lines = ["  kind: pgbackrest", f"  repository: {json.dumps(str(repository.resolve()))}",
             f"  stanza: {json.dumps(source.stanza)}",
             "  # target_time: \"2026-12-01T23:30:00+01:00\"   # default: the end of the "
             "archived WAL",
             f"  pg_path: {json.dumps(source.pg_path)}   # the data directory the backup was "
             "taken of",
             "  # service: postgresql   # the systemd unit stopped and started around the "
             "restore",
             "  restore_timeout: 1h   # bounds the restore, and the WAL replay"]  # fmt: skip
    return Draft(
        name, f"{facts.summary}; recovered into {_system_name(base.system)}",
        lines, [f"  image: {json.dumps(str(base_image.resolve()))}   # booted, never changed"],
        base.known, network=base.network, database=True,
    )  # fmt: skip


def _system_name(system: dict[str, Any]) -> str:
    return f"{system.get('distro', 'Linux')} {system.get('version', '')}".strip()


def scenario_text(draft: Draft, key_file: Path) -> str:
    """The starter scenario, commented: what it restores and what each check proves."""
    lines = [
        "# A first drill, written by `restore-drill init`.",
        f"# Found: {draft.found}; services enabled at boot that restore-drill knows: "
        + (", ".join(k.unit for k in draft.known) or "none") + ".",
        *([f"# Network: {draft.network}.",
           "# A static address is kept in the lab (README, \"Networks\"); state it with",
           "# address: if this is not what the server uses."] if draft.network else []),
        "# Run it:   restore-drill run THIS_FILE",
        "# The backup is never changed: the lab boots a copy-on-write overlay, and the report",
        "# proves the backup's hash, mode, owner and ctime unchanged.",
        "version: 1",
        f"name: {draft.name}",
        f"description: {json.dumps(f'restore drill ({draft.found})')}",
        "backup:",
        *draft.backup,
        "targets:",
        "  # Placeholders: set them to what your business agreed.",
        "  rto: 1h      # recovery time objective: drill start to service verified",
        "  rpo: 26h     # recovery point objective: the backup's age at drill start",
        "vm:",
        *draft.vm,
        "  memory: 1GiB",
        "  vcpus: 2",
        "  boot_timeout: 10m",
        "login:",
        "  user: root",
        f"  key_file: {json.dumps(str(key_file.resolve()))}",
        "  # The drill's key is added to the lab's copy before boot (never to the backup),",
        "  # so production needs no preparation. The report lists every file it changed.",
        "  inject_key: true",
        "  timeout: 5m",
        "checks:",
    ]
    for n, (path, sha) in enumerate(draft.files, 1):
        lines += ["  # A file of the backup came back where the system expects it, with the",
                  "  # content the backup holds (its SHA-256, read from the backup by init).",
                  f"  - name: restored file {n} is intact",
                  f"    file: {json.dumps(path)}",
                  f"    sha256: {sha}"]  # fmt: skip
    for known in draft.known:
        lines += [
            f"  # {known.what}: the unit {known.unit} is running after the restore.",
            f"  - name: {known.unit} is running",
            f"    service: {known.unit}",
        ]
        for port in known.ports:
            lines += [
                f"  # ... and something listens on port {port} (any address).",
                f"  - name: {known.unit} listens on {port}",
                f"    port: {port}",
            ]
        if known.command:
            lines += [f"  # {known.command_proves}.",
                      f"  - name: {known.unit} answers",
                      f"    command: {json.dumps(known.command)}"]  # fmt: skip
            if known.command_user:
                lines.append(f"    user: {known.command_user}")
    if draft.database:
        lines += ["  # PostgreSQL finished its recovery and accepts writes. Add a check of your",
                  "  # data: a row count, the newest row (values('counts.json'), README).",
                  "  - name: PostgreSQL recovered and accepts writes",
                  "    command: psql -tAc 'SELECT pg_is_in_recovery()'",
                  "    user: postgres",
                  '    stdout_matches: "^f$"']  # fmt: skip
    if not draft.known and not draft.files and not draft.database:
        lines += ["  # No service we know was enabled: this only proves the system boots and",
                  "  # takes a login. Add checks for what this server is for.",
                  "  - name: the system booted",
                  "    command: systemctl is-system-running --wait || true"]  # fmt: skip
    return "\n".join(lines) + "\n"


def ensure_key(path: Path) -> bool:
    """Create an unencrypted ed25519 drill key at ``path`` (0600) unless it exists; True
    if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "restore-drill",
                    "-f", str(path)], check=True, timeout=30)  # fmt: skip
    return True
