"""The kinds of backup and of disk image, as the scenario knows them: a low module read both
by the scenario package (schema, loader) and by :mod:`harness.sources`, so that loading a
scenario never imports the code that opens a backup."""

from __future__ import annotations

from dataclasses import dataclass

#: Disk formats a lab boots (through a qcow2 overlay): a backup, or a base image.
BOOTABLE_FORMATS = ("qcow2", "raw", "vmdk")


@dataclass(frozen=True)
class Kind:
    """A kind of backup: its class, as ``module:Class``, and what a scenario says about it."""

    impl: str
    keys: frozenset[str]  # the backup keys it takes, beyond kind, restore_point, verify_after
    required: tuple[str, ...]
    restored: bool = True  # its files are restored into vm.image; False: the backup boots


_FILES = frozenset({"path", "sha256", "target", "restore_timeout"})
_REPOSITORY = frozenset({"repository", "password", "password_file", "environment", "target",
                         "restore_timeout", "subpath", "host"})  # fmt: skip
_SYSTEM = frozenset({"subpath", "restore", "root"})  # a whole system, rebuilt on a blank disk
DEFAULT_KIND = "disk-image"
REGISTRY: dict[str, Kind] = {
    "disk-image": Kind("harness.sources.disk_image:DiskImageSource",
                       frozenset({"path", "format", "sha256", "disks"}), (), restored=False),
    "tar": Kind("harness.sources.tar:TarSource", _FILES | _SYSTEM, ("path",)),
    "file": Kind("harness.sources.tar:SingleFileSource", _FILES | {"integrity"},
                 ("path", "target")),
    "restic": Kind("harness.sources.restic:ResticSource",
                   _REPOSITORY | _SYSTEM | {"snapshot", "tags", "path", "integrity"},
                   ("repository",)),
    "borg": Kind("harness.sources.borg:BorgSource",
                 _REPOSITORY | _SYSTEM | {"archive", "glob_archives", "prefix", "integrity"},
                 ("repository",)),
    "pgbackrest": Kind("harness.sources.pgbackrest:PgBackRestSource",
                       frozenset({"repository", "stanza", "set", "target_time", "recovery_target",
                                  "pg_path", "service", "restore_timeout", "integrity"}),
                       ("repository",)),
}  # fmt: skip
