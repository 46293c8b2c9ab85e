"""File-level backups (tar, a single file, restic, borg): the scenario's base image boots,
and the backup's files are restored into the running guest as one tar stream that the
backup's own tool produces (``restic dump``, ``borg export-tar``, the archive itself),
piped over SSH into ``tar -x`` in the guest. No staging copy on the host, and the restore
is timed as a phase of the recovery.

Tools read repositories without locking them (``restic --no-lock``, ``borg --bypass-lock``)
and with their caches in a throw-away folder: the repository is never written to, which
the before/after identity of every file in it then proves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from harness.durations import format_size
from harness.errors import InfraError, PhaseFailed, PhaseTimeout
from harness.evidence.model import BackupEvidence
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources import BootDisk
from harness.sources.disk_image import inspect_image
from harness.sources.identity import Proof, confirm_unchanged, hash_backup, identity
from harness.sources.system import (
    BOOT_FOLDERS,
    BootPlan,
    DiskPlan,
    parse_fstab,
    plan_boot,
    plan_disk,
)
from harness.sources.view import copy_on_write

TOOL_TIMEOUT_S = 300.0
SAMPLE_MAX_BYTES = 1024 * 1024  # init's sample files: small ones, read whole
STDERR_KEEP = 4000
APT_PACKAGE = {"restic": "restic", "borg": "borgbackup", "zstd": "zstd", "tar": "tar"}


@dataclass(frozen=True)
class Inspected:
    """What the backup's own metadata says: its time and a summary for the evidence."""

    summary: str
    restore_point: datetime | None = None
    restore_point_source: str = ""
    details: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # e.g. a repository of several hosts and no host given


class FileLevelSource:
    """Shared by every file-level kind; a kind says how to inspect and how to stream."""

    tool = ""
    sample_max_bytes = SAMPLE_MAX_BYTES
    #: Folders of a repository whose files are content-addressed and written once (proven
    #: by name and stat); everything else in it is hashed.
    written_once: tuple[str, ...] = ()
    written_once_are = ""  # what those files are, for the report

    def __init__(self, spec: BackupSpec, vm: VmSpec) -> None:
        image = vm.rescue_image if spec.restore == "system" else vm.image
        assert image is not None  # noqa: S101 - the loader ensures it
        assert spec.target is not None  # noqa: S101 - the loader ensures it
        self.spec, self.vm, self.image_path, self.target = spec, vm, image, spec.target
        self.system: tuple[DiskPlan, BootPlan] | None = None  # restore: system, from verify

    # -- what a kind provides -------------------------------------------------------------
    def inspect(self) -> Inspected:
        raise NotImplementedError

    def stream_command(self) -> list[str]:
        raise NotImplementedError

    #: a repository of restore points: the spec's field naming one, and the time and name
    #: keys of :meth:`points`; None: one restore point (a tar file)
    pin: tuple[str, str, str] | None = None

    def points(self) -> list[dict[str, Any]]:
        """The repository's restore points as its tool lists them (with :attr:`pin`)."""
        raise NotImplementedError

    def selected(self, point: dict[str, Any]) -> bool:
        """Whether the scenario's selector (host, tags, paths) takes this restore point."""
        raise NotImplementedError

    def restore_points(self) -> list[str]:
        """Every restore point the scenario's selector takes, newest first, as
        :meth:`pinned` names them; ``[""]`` for a kind with one."""
        if self.pin is None:
            return [""]
        _, time_key, name_key = self.pin
        chosen = sorted((p for p in self.points() if self.selected(p)),
                        key=lambda p: parse_time(p[time_key]), reverse=True)  # fmt: skip
        return [str(p[name_key]) for p in chosen]

    def pinned(self, point: str) -> BackupSpec:
        """The backup spec with ``point`` (from :meth:`restore_points`) chosen."""
        if self.pin is None:
            return self.spec
        return replace(self.spec, snapshot=point) if self.pin[0] == "snapshot" else \
            replace(self.spec, archive=point)  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        """Up to ``limit`` small regular files of the backup (after :meth:`inspect`; under
        ``subpath`` if set), as the backup names them without a leading ``/``: for ``init``'s
        checks that the files came back (see :meth:`restored_path`)."""
        raise NotImplementedError

    def restored_path(self, path: str) -> str:
        """Where a file of :meth:`sample_files` lands in the guest."""
        relative = path.removeprefix("./").lstrip("/")
        if self.spec.subpath:
            relative = relative.removeprefix(self.spec.subpath.lstrip("/")).lstrip("/")
        return f"{self.target.rstrip('/')}/{relative}"

    def file_content(self, path: str) -> bytes:
        """One file of the backup (a path from :meth:`sample_files`), read by its tool."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(self.spec.environment)

    def system_names(self, paths: tuple[str, ...]) -> set[str]:
        """restore: system: the backup's names at or under ``paths`` (relative to the
        system's root, ``boot``, ``etc/fstab``), spelled the same way."""
        raise PhaseFailed("verify", f"a {self.spec.kind} backup cannot be a whole system")

    def system_file(self, path: str) -> bytes:
        """restore: system: one file of the system (``etc/fstab``), read by its tool."""
        raise PhaseFailed("verify", f"a {self.spec.kind} backup cannot be a whole system")

    def rooted(self, path: str) -> str:
        """A path relative to the system's root, as the backup stores it (no leading /)."""
        root = (self.spec.subpath or "").strip("/")
        return f"{root}/{path}" if root else path

    def unrooted(self, name: str) -> str:
        """A name as the backup stores it (``./x``, ``/x``, ``x``), relative to the root."""
        name = name.removeprefix("./").strip("/")
        root = (self.spec.subpath or "").strip("/")
        return name[len(root) + 1 :] if root and name.startswith(f"{root}/") else name

    def layout(self) -> tuple[int, tuple[str, ...]]:
        """How the guest's ``tar -x`` places the stream: how many leading folders it cuts
        from each member, and which members it takes (none named: all). A ``subpath``'s
        stream still holds the paths as on the server (``var/www/html/…``); they are cut so
        its content lands in ``target``."""
        if self.spec.subpath is None:
            return 0, ()
        return strip_count(self.spec.subpath), ()

    def extract_args(self) -> list[str]:
        """What ``tar -x`` in the guest adds (see :meth:`layout`)."""
        strip, members = self.layout()
        # a whole system: owners by number (the rescue system's names are not the server's),
        # extended attributes (file capabilities, SELinux labels) kept
        whole = ["--numeric-owner", "--xattrs", "--xattrs-include=*"] if self.system else []
        return whole + ([f"--strip-components={strip}"] if strip else []) + \
            (["--", *members] if members else [])  # fmt: skip

    # -- the Source interface -------------------------------------------------------------
    def verify(self) -> tuple[BackupEvidence, BootDisk]:
        location = self.spec.location
        before = identity(location) if location else None
        image, chain, image_check = inspect_image(self.image_path, self.vm.image_format,
                                                  "base image")  # fmt: skip
        facts = self.inspect()
        details = dict(facts.details)
        if self.spec.restore == "system":
            details.update(self._plan_system())
        restore_point: datetime | None
        if self.spec.restore_point:
            restore_point, source = self.spec.restore_point, "scenario"
        elif facts.restore_point or facts.restore_point_source:  # known, or known later
            restore_point, source = facts.restore_point, facts.restore_point_source
        elif before is not None:
            restore_point, source = datetime.fromtimestamp(before.mtime_ns / 1e9, UTC), "mtime"
        else:
            raise PhaseFailed("verify", "the backup's time is unknown: set backup.restore_point")
        evidence = BackupEvidence(
            kind=self.spec.kind, path=str(location or self.spec.repository),
            format=self.spec.kind,
            restore_point=restore_point.isoformat() if restore_point else "",
            restore_point_source=source, sha256_expected=self.spec.sha256,
            image_check=f"{facts.summary}; {self._image_words()} {image.format}: "
                        f"{image_check}",
            identity_before=before, base_image=str(self.image_path),
            details={**details, **self._where()}, warnings=list(facts.warnings),
        )  # fmt: skip
        return evidence, BootDisk(self.image_path, image, chain)

    def _image_words(self) -> str:
        return "rescue image" if self.spec.restore == "system" else "base image"

    def _plan_system(self) -> dict[str, str]:
        """restore: system: the blank disk's plan from the backup's own fstab, and the
        kernel and boot loader it must hold; refused here, before anything is created."""
        assert self.vm.disk is not None  # noqa: S101 - the loader ensures it
        names = self.system_names(("etc/fstab", *BOOT_FOLDERS))
        if "etc/fstab" not in names:
            raise PhaseFailed("verify", "the backup holds no /etc/fstab: nothing says which "
                                        "file systems the system needs (is the backup's root "
                                        "the system's? see backup.root)")  # fmt: skip
        fstab = self.system_file("etc/fstab").decode(errors="replace")
        disk = plan_disk(parse_fstab(fstab), self.vm.disk)
        wanted = self.vm.firmware
        if wanted == "uefi" and disk.esp is None:
            raise PhaseFailed("verify", "vm.firmware: uefi, but the backup's /etc/fstab mounts "
                                        "no EFI system partition (vfat at /boot/efi)")
        uefi = wanted == "uefi" or (wanted == "auto" and disk.esp is not None)
        boot = plan_boot(names, "uefi" if uefi else "bios")
        self.system = disk, boot
        why = ("set in the scenario (vm.firmware)" if wanted != "auto" else
               "auto: the backup's fstab mounts an EFI system partition" if uefi else
               "auto: the backup's fstab mounts no EFI system partition")  # fmt: skip
        return {
            "disk layout": f"{disk.layout}; {format_size(self.vm.disk.size_bytes)} blank disk",
            "file systems": "; ".join(f.words() for f in disk.filesystems),
            **({"fstab entries left out": "; ".join(disk.skipped)} if disk.skipped else {}),
            "kernels": ", ".join(boot.kernels),
            "boot loader": f"{boot.loader} (the restored system's own, run in a chroot)",
            "firmware": f"{boot.firmware} ({why})",
        }

    def _where(self) -> dict[str, str]:
        if self.spec.restore == "system":
            root = self.spec.subpath or "/"
            return {"restored": f"the whole system (the backup's {root}) onto a blank disk, "
                                "from a rescue system"}  # fmt: skip
        if self.spec.subpath is None:
            return {"restored into": self.target}
        return {"subpath": self.spec.subpath, "restored into": self.target}

    @property
    def by_stat(self) -> tuple[str, ...]:
        """The repository's content-addressed, written-once files (unless ``full-hash``)."""
        return () if self.spec.verify_after == "full-hash" else self.written_once

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        if self.spec.location is None:
            return
        hashed, stated = hash_backup(evidence, self.spec.location, stop, self.by_stat)
        if stated:
            evidence.details["repository proof"] = (
                f"{stated} {self.written_once_are} under {', '.join(self.by_stat)} by name and "
                f"stat (size, inode, mtime, ctime: written once, never in place); {hashed} "
                "other file(s) by SHA-256 (verify_after: full-hash hashes every file)")  # fmt: skip

    def confirm_unchanged(self, evidence: BackupEvidence, proof: Proof) -> None:
        if self.spec.location is not None:
            confirm_unchanged(evidence, self.spec.location, self.spec.verify_after, proof,
                              self.by_stat)  # fmt: skip
        else:
            evidence.details["unchanged"] = "a remote repository: not provable from this host"

    @contextmanager
    def restore_stream(self) -> Iterator[IO[bytes]]:
        """The backup's files as a tar stream. If the tool fails, :class:`PhaseFailed` at the
        restore phase carries its error, also when the guest noticed the broken stream first."""
        argv = self.stream_command()
        with self._tool_env() as env, tempfile.TemporaryFile() as stderr:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
                )
            except FileNotFoundError:
                raise _missing(argv[0]) from None
            assert proc.stdout is not None  # noqa: S101 - PIPE above
            failure: BaseException | None = None
            try:
                yield proc.stdout
            except BaseException as exc:
                failure = exc
            finally:
                if proc.poll() is None and failure is not None:
                    proc.kill()
                code = proc.wait()
                proc.stdout.close()
                stderr.seek(0)
                said = _tail(stderr.read())
        if code != 0 and not (failure is not None and code < 0):
            raise PhaseFailed("restore", f"{argv[0]} failed (exit {code}): {said}") from failure
        if failure is not None:
            raise failure

    def run_tool(self, argv: list[str], phase: str = "verify") -> str:
        """Run the tool to completion (bounded); its output. A failure fails ``phase``."""
        return self.tool_bytes(argv, phase).decode(errors="replace")

    def tool_bytes(
        self, argv: list[str], phase: str = "verify", timeout_s: float = TOOL_TIMEOUT_S,
        merged: bool = False, name: str = "",
    ) -> bytes:  # fmt: skip
        """:meth:`run_tool`'s output as the tool wrote it (a file's content); ``merged``:
        its standard error too (a check's report). ``name`` is the tool's, for messages."""
        name = name or argv[0]
        with self._tool_env() as env:
            try:
                done = subprocess.run(
                    argv, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT if merged else subprocess.PIPE, env=env,
                    timeout=timeout_s, check=False, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            except FileNotFoundError:
                raise _missing(argv[0]) from None
            except subprocess.TimeoutExpired:
                raise PhaseTimeout(phase, f"{name} gave no answer within "
                                          f"{timeout_s:g}s") from None  # fmt: skip
        if done.returncode != 0:
            raise PhaseFailed(phase, f"{name} failed (exit {done.returncode}): "
                                     f"{_tail(done.stderr or done.stdout)}")  # fmt: skip
        return done.stdout

    # -- the tool's own integrity check ----------------------------------------------------
    def integrity_argv(self, location: str) -> list[str]:
        """The check's command line, given where the repository (or file) is to be read."""
        raise PhaseFailed("integrity", f"a {self.spec.kind} backup has no integrity check")

    def integrity_summary(self, output: str) -> str:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        return lines[-1] if lines else "no output"

    def integrity_problem(self, output: str) -> str:
        """What the check found wrong though it exited 0 (a tool that reports, not fails);
        "" when nothing."""
        return ""

    def check_integrity(self) -> str:
        """Run the tool's own check (``backup.integrity``); what it said. A local repository
        is read through a copy-on-write view (:mod:`.view`): the check cannot write to it."""
        spec = self.spec.integrity
        assert spec is not None  # noqa: S101 - only called when the scenario asks
        location = self.spec.location
        tool = self.integrity_argv("")[0]
        if shutil.which(tool) is None:
            raise _missing(tool)
        if location is not None and location.is_dir():
            with copy_on_write(location) as (prefix, view):
                argv = self.integrity_argv(view)
                out = self.tool_bytes(prefix + argv, "integrity", spec.timeout_s, merged=True,
                                      name=tool)  # fmt: skip
            how = "through a copy-on-write view of the repository"
        else:
            argv = self.integrity_argv(str(location) if location else str(self.spec.repository))
            out = self.tool_bytes(argv, "integrity", spec.timeout_s, merged=True)
            how = "reading the file" if location else "on the remote repository"
        shown = " ".join(self.integrity_argv("<repository>" if location is None or
                                             location.is_dir() else "<file>"))  # fmt: skip
        said = out.decode(errors="replace")
        problem = self.integrity_problem(said)
        if problem:
            raise PhaseFailed("integrity", f"{tool} found damage: {problem}")
        return f"{shown} ({how}): {self.integrity_summary(said)}"

    @contextmanager
    def _tool_env(self) -> Iterator[dict[str, str]]:
        """The tool's environment, with a private HOME (and borg base folder) that is removed
        afterwards: its caches and config never touch the host's."""
        home = tempfile.mkdtemp(prefix="rdrill-tool-")
        try:
            yield {**os.environ, **self.environment(), "HOME": home, "BORG_BASE_DIR": home}
        finally:
            shutil.rmtree(home, ignore_errors=True)


def strip_count(folder: str) -> int:
    """How many leading components ``tar --strip-components`` cuts to drop ``folder``."""
    return len(folder.strip("/").split("/"))


def password_env(spec: BackupSpec, variable: str) -> dict[str, str]:
    """The repository password for the tool, from the scenario or its file."""
    if spec.password is not None:
        return {variable: spec.password}
    if spec.password_file is not None:
        try:
            return {variable: spec.password_file.read_text().strip()}
        except OSError as exc:
            raise PhaseFailed(
                "verify", f"cannot read {spec.password_file}: {exc.strerror}"
            ) from None
    return {}


def _missing(tool: str) -> InfraError:
    package = APT_PACKAGE.get(Path(tool).name, Path(tool).name)
    return InfraError(f"{tool} is not installed on this host (apt install {package})")


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    text = text[-STDERR_KEEP:]
    return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "no output"


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The objects of a tool's JSON-lines output; other lines (warnings) skipped."""
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def parse_time(text: str) -> datetime:
    """A tool's timestamp; one without a zone is the host's local time (as borg writes it)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(UTC)


def newest(items: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The item whose ``key`` timestamp is latest, compared as times, never as text:
    ``2026-10-24T23:30:00+02:00`` is older than ``2026-10-24T22:00:00Z``."""
    return max(items, key=lambda item: parse_time(str(item[key])), default=None)


def pick_latest(
    items: list[dict[str, Any]], time_key: str, host_key: str, spec: BackupSpec,
    selected: Callable[[dict[str, Any]], bool], what: str,
) -> tuple[dict[str, Any], tuple[str, ...]]:  # fmt: skip
    """The newest of ``items`` the scenario's selector admits, and the warning a shared
    repository earns when the scenario names no host (the newest of *any* server's backups
    would be drilled, and could PASS as the wrong server)."""
    chosen = newest([i for i in items if selected(i)], time_key)
    hosts = sorted({str(i.get(host_key, "")) for i in items})
    if chosen is None:
        raise PhaseFailed("verify", f"no {what} in the repository matches "
                                    f"{spec.selector or 'any'} ({len(items)} {what}(s); "
                                    f"hosts: {', '.join(hosts) or 'none'})")  # fmt: skip
    if spec.host is None and len(hosts) > 1:
        drilled = chosen.get(host_key, "?")
        return chosen, (f"the repository holds backups of {len(hosts)} hosts "
                        f"({', '.join(hosts)}) and the scenario names none: the newest of any "
                        f"host was drilled ({drilled}); set backup.host",)  # fmt: skip
    return chosen, ()
