"""The JSON Schema of a scenario file (after Jinja2 rendering), version 1.

``restore-drill schema`` prints it so editors (YAML language server) can complete and lint
scenario files. Checks the schema cannot express (durations in range, files that exist,
regular expressions that compile, unique check names) live in the loader's semantic pass
(:mod:`harness.scenario.loader`).
"""

from __future__ import annotations

from typing import Any

from harness.durations import DURATION_PATTERN, SIZE_PATTERN
from harness.kinds import BOOTABLE_FORMATS, DEFAULT_KIND, REGISTRY

SCHEMA_ID = "https://restore-drill.dev/schema/scenario-v1.json"

_BOOTED = ", ".join(k for k, kind in REGISTRY.items() if not kind.restored)
_RESTORED = ", ".join(k for k, kind in REGISTRY.items() if kind.restored)

_duration = {
    "description": "seconds as a number, or units in order: 90s, 15m, 4h, 1h30m, 2d",
    "type": ["string", "number"],
    "pattern": DURATION_PATTERN,
    "exclusiveMinimum": 0,
}
_image_formats = ["auto", *BOOTABLE_FORMATS]
_name = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,39}$"}
_path = {"type": "string", "minLength": 1, "maxLength": 4096}
_text = {"type": "string", "minLength": 1, "maxLength": 4096}
_absolute = {"type": "string", "pattern": "^/[^\\0]*$", "maxLength": 4096}  # a path in the guest

# Each check kind: the key that names its subject, and the options that key allows.
CHECK_KINDS: dict[str, dict[str, Any]] = {
    "service": {
        "service": {"description": "systemd unit name", **_text},
        "running": {"type": "boolean", "default": True},
        "enabled": {"type": "boolean"},
    },
    "port": {
        "port": {
            "description": "5432: something listens on that port, on any address; "
            "tcp://0.0.0.0:5432 (or tcp://[::1]:5432, udp://53, unix:///run/x.sock): exactly that",
            "type": ["integer", "string"],
            "minimum": 1,
            "maximum": 65535,
            "pattern": r"^((tcp|udp)://(\[[0-9A-Fa-f:.]+\]:|[0-9.]+:)?[0-9]{1,5}|unix://\S+)$",
        },
        "listening": {"type": "boolean", "default": True},
    },
    "http": {
        "http": {
            "description": "path requested from the restored VM over the lab network",
            "type": "string",
            "pattern": "^/",
            "maxLength": 4096,
        },
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80},
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
        "contains": _text,
    },
    "file": {
        "file": {"description": "absolute path in the guest", "type": "string", "pattern": "^/"},
        "exists": {"type": "boolean", "default": True},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "contains": {"description": "a regular expression (grep -E)", **_text},
    },
    "command": {
        "command": {"description": "shell command run in the guest", **_text},
        "exit_status": {"type": "integer", "minimum": 0, "maximum": 255, "default": 0},
        "stdout_matches": {"description": "Python regular expression, searched", **_text},
        "stdout_contains": _text,
        "user": {"description": "run as this guest user (runuser/sudo)", **_name},
    },
    "package": {
        "package": _text,
        "installed": {"type": "boolean", "default": True},
        "version": {"description": "version prefix", **_text},
    },
}

CHECK_COMMON = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "description": {"type": "string", "maxLength": 4096},
    "timeout": {**_duration, "description": "bound on this check (default: checks_timeout)"},
    "machine": {"description": "the machine it runs on (default: the first)", **_name},
}


def check_kinds(check: dict[str, Any]) -> list[str]:
    """The kinds a check names: ``port`` beside ``http`` is the http check's option, not a
    second kind (a kind's key is an option of another kind there)."""
    named = [k for k in CHECK_KINDS if k in check]
    return [k for k in named if not any(k in CHECK_KINDS[o] for o in named if o != k)]


def _check_schema() -> dict[str, Any]:
    branches = []
    for kind, props in CHECK_KINDS.items():
        hosts = [{"required": [o]} for o, p in CHECK_KINDS.items() if o != kind and kind in p]
        when: dict[str, Any] = {"required": [kind]}
        if hosts:  # port inside an http check is that check's option
            when["not"] = {"anyOf": hosts}
        branches.append({"if": when, "then": {"properties": props}})
    return {
        "type": "object",
        "required": ["name"],
        "properties": CHECK_COMMON,
        "allOf": branches,
        "unevaluatedProperties": False,
    }


_SCAN: dict[str, Any] = {
    "description": "scan the restored files, read-only from the host, with your own ClamAV "
    "database and/or YARA rules (never anything run in the guest)",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "when": {
            "description": "after (default): once the checks ran, not counted in the RTO; "
            "before_boot: a staged restore, a hit stops the drill before anything boots",
            "enum": ["after", "before_boot"], "default": "after",
        },
        "clamav": {
            "type": "object", "additionalProperties": False, "required": ["database"],
            "properties": {"database": {
                "description": "your ClamAV signature folder (e.g. /var/lib/clamav, kept fresh "
                "by freshclam) or one signature file; restore-drill never downloads one",
                **_path}},
        },
        "yara": {
            "type": "object", "additionalProperties": False, "required": ["rules"],
            "properties": {"rules": {"type": "array", "minItems": 1, "maxItems": 100,
                                     "items": _path}},
        },
        "paths": {
            "description": "folders of the restored system to scan (default: all of it)",
            "type": "array", "minItems": 1, "maxItems": 100, "items": _absolute,
        },
        "max_file_size": {
            "description": "larger files are counted as skipped, never passed over silently",
            "type": ["string", "integer"], "pattern": SIZE_PATTERN, "minimum": 1,
            "default": "100MiB",
        },
        "timeout": {**_duration, "description": "bound on the whole scan (default 30m)"},
    },
    "anyOf": [{"required": ["clamav"]}, {"required": ["yara"]}],
}


_EXPECT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["manifest"],
    "properties": {
        "manifest": {"description": "the manifest file, relative to the scenario", **_path},
        "root": {
            "description": "the folder in the guest (default: the root the manifest names)",
            "type": "string", "pattern": "^/", "maxLength": 4096,
        },
        "strict": {
            "description": "files the manifest does not list fail the drill too",
            "type": "boolean", "default": False,
        },
        "public_key": {
            "description": "the manifest must be signed by this Ed25519 key (a .pub of "
            "restore-drill keygen), relative to the scenario",
            **_path,
        },
        "ignore": {
            "description": "attributes not compared (content and size always are)",
            "type": "array", "uniqueItems": True,
            "items": {"enum": ["mode", "owner", "mtime"]},
        },
        "timeout": {**_duration, "description": "bound on listing and hashing the folder"},
    },
}  # fmt: skip

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "restore-drill scenario",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "targets"],
    "properties": {
        "version": {"const": 1},
        "name": {"description": "scenario name, used in report folder names", **_name},
        "description": {"type": "string", "maxLength": 4096},
        "backup": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {
                    "description": f"{_BOOTED}: boot it; {_RESTORED}: restore it into "
                    "vm.image (see README, 'Kinds of backup')",
                    "enum": list(REGISTRY),
                    "default": DEFAULT_KIND,
                },
                "path": {
                    "description": "the backup file, relative to the scenario (disk-image, "
                    "tar, file); restic: use only snapshots that include this absolute path",
                    **_path,
                },
                "repository": {
                    "description": "restic/borg repository: a local path (relative to the "
                    "scenario) or a URL the tool understands (sftp:, s3:, rest:, ssh://); "
                    "pgbackrest: the repository folder (repo1-path) on this host",
                    **_path,
                },
                "snapshot": {"description": "restic snapshot id (default: latest)", **_text},
                "archive": {"description": "borg archive name (default: the newest)", **_text},
                "host": {
                    "description": "restic/borg: use only snapshots or archives of this host "
                    "(what 'latest' means in a repository several servers share)",
                    **_text,
                },
                "tags": {
                    "description": "restic: use only snapshots carrying all these tags",
                    "type": "array", "minItems": 1, "maxItems": 20, "items": _text,
                },
                "glob_archives": {
                    "description": "borg: use only archives whose name matches this "
                    "shell-style pattern (as borg's --glob-archives)",
                    **_text,
                },
                "prefix": {"description": "borg: use only archives whose name starts so", **_text},
                "subpath": {
                    "description": "tar/restic/borg: restore only this folder of the backup "
                    "(as it was on the server, e.g. /var/www/html), its content into target "
                    "(default: the same path)",
                    **_absolute,
                },
                "restore": {
                    "description": "tar/restic/borg: files (default): restore the files into "
                    "the running vm.image; system: rebuild the whole machine from a rescue "
                    "system on a blank disk (vm.disk): partition, file systems with the UUIDs "
                    "and labels its fstab names, files, its own boot loader, then boot it "
                    "(README, 'Bare-metal restore')",
                    "enum": ["files", "system"], "default": "files",
                },
                "root": {
                    "description": "restore: system: the system's root inside the backup when "
                    "it is not / (e.g. a backup made of a mounted snapshot, /mnt/snap)",
                    **_absolute,
                },
                "password": {"description": "repository password; use secret()", **_text},
                "password_file": {"description": "file holding the repository password", **_path},
                "environment": {
                    "description": "environment for the backup tool (e.g. S3 credentials via "
                    "secret()); values are redacted from evidence",
                    "type": "object",
                    "maxProperties": 50,
                    "propertyNames": {"pattern": "^[A-Z_][A-Z0-9_]*$"},
                    "additionalProperties": {"type": "string", "maxLength": 4096},
                },
                "target": {
                    "description": "directory in the guest the files are restored into "
                    "(default: subpath, else / so files land where they were on the server; "
                    "a file backup needs one)",
                    **_absolute,
                },
                "restore_timeout": {**_duration, "description": "bound on the data restore"},
                "integrity": {
                    "description": "the backup tool's own integrity check, a phase of its own "
                    "before boot, not counted in the RTO (restic check, borg check, "
                    "pg_restore --list, pgbackrest verify); never writes to the repository",
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "check": {"type": "boolean", "default": True},
                        "read_data_subset": {
                            "description": "restic: the share of pack files read and "
                            "verified (5%, 1/10, 500M)",
                            "type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+|"
                                                         r"[0-9]+[KMGT]?)$",
                        },
                        "verify_data": {
                            "description": "borg: read and verify every chunk (check "
                            "--verify-data)", "type": "boolean", "default": False,
                        },
                        "timeout": {**_duration, "description": "bound on the check"},
                    },
                },
                "stanza": {
                    "description": "pgbackrest: the stanza (default: the repository's only one)",
                    **_text,
                },
                "set": {
                    "description": "pgbackrest: the backup set label (default: the newest "
                    "that ended before target_time, else the newest)",
                    "type": "string", "pattern": r"^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$",
                },
                "target_time": {
                    "description": "pgbackrest: recover to this ISO 8601 time (a zone, or "
                    "UTC); default: recovery_target",
                    "type": "string",
                },
                "recovery_target": {
                    "description": "pgbackrest: latest (replay all archived WAL) or "
                    "immediate (stop where the backup is consistent)",
                    "enum": ["latest", "immediate"], "default": "latest",
                },
                "pg_path": {
                    "description": "pgbackrest: the data directory in the guest (default: "
                    "the one the backup was taken of)",
                    **_absolute,
                },
                "service": {
                    "description": "pgbackrest: the systemd unit stopped before the restore "
                    "and started after it (default postgresql)",
                    "type": "string", "pattern": "^[A-Za-z0-9@._:-]{1,255}$",
                },
                "format": {"enum": _image_formats, "default": "auto"},
                "disks": {
                    "description": "a server of several disks: each disk's image, in "
                    "production order (the first boots); instead of path",
                    "type": "array", "minItems": 1, "maxItems": 16,
                    "items": {
                        "type": "object", "additionalProperties": False, "required": ["path"],
                        "properties": {"path": _path,
                                       "format": {"enum": _image_formats, "default": "auto"}},
                    },
                },
                "restore_point": {
                    "description": "ISO 8601 time of the backup (default: from the backup "
                    "tool's metadata, else the file's mtime)",
                    "type": "string",
                },
                "sha256": {
                    "description": "expected hash; a mismatch fails the drill",
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                },
                "verify_after": {
                    "description": "prove the backup unchanged after the drill by hash (a "
                    "restic/borg repository: its written-once pack files and segments by name "
                    "and stat, every other file by SHA-256), full-hash (every file hashed), "
                    "or stat (size, mode, owner, inode, mtime and ctime)",
                    "enum": ["hash", "full-hash", "stat"],
                    "default": "hash",
                },
            },
        },
        "restore_steps": {
            "description": "commands run in the guest after the data restore, before checks",
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "run"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "run": {"description": "shell command", **_text},
                    "user": {"description": "run as this guest user", **_name},
                    "timeout": {**_duration, "description": "bound on the step (default 10m)"},
                },
            },
        },
        "targets": {
            "type": "object",
            "additionalProperties": False,
            "required": ["rto", "rpo"],
            "properties": {
                "rto": {**_duration, "description": "recovery time objective"},
                "rpo": {**_duration, "description": "recovery point objective"},
            },
        },
        "vm": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "memory": {
                    "type": ["string", "integer"],
                    "pattern": SIZE_PATTERN,
                    "minimum": 64,
                    "default": "1GiB",
                },
                "vcpus": {"type": "integer", "minimum": 1, "maximum": 64, "default": 2},
                "image": {
                    "description": "base VM disk image a file-level backup is restored into "
                    "(never changed: booted through an overlay)",
                    **_path,
                },
                "image_format": {"enum": _image_formats, "default": "auto"},
                "disk": {
                    "description": "restore: system: the blank disk the machine is rebuilt on "
                    "(a sparse qcow2 in the lab folder)",
                    "type": "object", "additionalProperties": False, "required": ["size"],
                    "properties": {
                        "size": {"description": "e.g. 8GiB", "type": "string",
                                 "pattern": SIZE_PATTERN},
                        "layout": {
                            "description": "auto (default): one bootable root partition on an "
                            "MBR (plus swap if fstab names one); or a file holding the "
                            "server's 'sfdisk --dump', saved at backup time",
                            **_path,
                        },
                        "partitions": {
                            "description": "with a layout file: the partition number each of "
                            "fstab's mount points is on ('/': 2, '/boot': 1, swap: 3)",
                            "type": "object", "maxProperties": 64,
                            "propertyNames": {"pattern": "^(/[^\\0]*|swap)$"},
                            "additionalProperties": {"type": "integer", "minimum": 1,
                                                     "maximum": 128},
                        },
                    },
                },
                "rescue_image": {
                    "description": "restore: system: the rescue system booted beside the blank "
                    "disk (default: restore-drill's own, scripts/build-rescue-image); never "
                    "written (booted through an overlay)",
                    **_path,
                },
                "accelerator": {"enum": ["auto", "kvm", "tcg"], "default": "auto"},
                "firmware": {
                    "description": "auto: UEFI when the boot disk is GPT with an EFI system "
                    "partition (read before boot, read-only), else BIOS; restore: system: "
                    "UEFI when the backup's fstab mounts an EFI system partition",
                    "enum": ["auto", "bios", "uefi"], "default": "auto",
                },
                "secure_boot": {
                    "description": "UEFI with Secure Boot (Microsoft keys enrolled)",
                    "type": "boolean", "default": False,
                },
                "boot_timeout": {**_duration, "description": "power-on to DHCP lease"},
                "settle_timeout": {
                    **_duration,
                    "description": "SSH login to systemd's boot finished (is-system-running)",
                },
            },
        },
        "login": {
            "type": "object",
            "additionalProperties": False,
            "required": ["user", "key_file"],
            "properties": {
                "user": _name,
                "key_file": {"description": "private key, relative to the scenario", **_path},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22},
                "timeout": {**_duration, "description": "DHCP lease to SSH login"},
                "password": {
                    "description": "for servers that allow password login: tried after the "
                    "key; write it as {{ secret(\"NAME\") }}",
                    **_text,
                },
                "inject_key": {
                    "description": "before boot, let the drill's key log in as user, in the "
                    "lab's copy only (the backup is never written)",
                    "type": "boolean", "default": False,
                },
                "create_user": {
                    "description": "with inject_key: create user in the lab copy if the "
                    "restored system has none (with a sudo rule)",
                    "type": "boolean", "default": False,
                },
            },
        },
        "checks": {"type": "array", "maxItems": 1000, "items": _check_schema()},
        "checks_timeout": {**_duration, "description": "default bound on each check"},
        "isolation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "probe": {
                    "description": "extra host:port targets the guest must NOT reach "
                    "(TEST-NET addresses are always tried)",
                    "type": "array",
                    "maxItems": 20,
                    "items": {"type": "string", "pattern": r"^[0-9A-Za-z.:\[\]-]+:\d{1,5}$"},
                }
            },
        },
        "network": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "detect": {
                    "description": "read each boot disk's own network configuration before "
                    "boot (read-only) to find static addresses",
                    "type": "boolean", "default": True,
                },
                "subnets": {
                    "description": "production subnets the lab replicates",
                    "type": "array", "minItems": 1, "maxItems": 8,
                    "items": {
                        "type": "object", "additionalProperties": False, "required": ["cidr"],
                        "properties": {"cidr": _text, "gateway": _text},
                    },
                },
            },
        },
        "expect": {
            "description": "the restored files must match a manifest recorded at backup time "
            "(restore-drill manifest); a list for several folders",
            "anyOf": [_EXPECT, {"type": "array", "minItems": 1, "maxItems": 20,
                                "items": _EXPECT}],
        },
        "scan": _SCAN,
        "address": {
            "description": "the machine's production address (192.168.10.20/24); default: "
            "as its own network configuration says, else DHCP",
            **_text,
        },
        "testinfra": {
            "type": "object",
            "additionalProperties": False,
            "required": ["files"],
            "properties": {
                "files": {"type": "array", "minItems": 1, "maxItems": 100, "items": _path},
                "machine": {"description": "the machine they run on (default: the first)", **_name},
                "timeout": {**_duration, "description": "bound on the whole pytest run"},
            },
        },
    },
}

# Several VMs: each machine has the single-VM keys (its vm merges over the top-level vm; its
# login, if given, replaces the top-level login), plus its dependencies and host names.
_MACHINE_KEYS = ("backup", "vm", "login", "restore_steps", "address", "expect", "scan")
SCHEMA["properties"]["machines"] = {
    "description": "several VMs in one isolated lab (instead of backup/vm at the top level)",
    "type": "array",
    "minItems": 1,
    "maxItems": 16,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "backup"],
        "properties": {
            "name": _name,
            **{key: SCHEMA["properties"][key] for key in _MACHINE_KEYS},
            "depends_on": {
                "description": "machines that must be ready before this one is powered on",
                "type": "array",
                "maxItems": 16,
                "items": _name,
            },
            "hostnames": {
                "description": "names that resolve to this machine inside the lab",
                "type": "array",
                "maxItems": 16,
                "items": {"type": "string", "pattern": "^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$"},
            },
        },
    },
}
