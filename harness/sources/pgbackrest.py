"""A pgBackRest repository: point-in-time recovery of a PostgreSQL cluster.

The scenario's base image (a server with PostgreSQL and ``pgbackrest``) boots; the
repository is shared into it read-only (:mod:`harness.lab.share`), and the server's own
``pgbackrest restore`` and PostgreSQL's WAL replay do the recovery (:mod:`harness.drill.
recovery`), exactly as a DBA would on a rebuilt server. The repository is read here only
to choose the backup set and check that its WAL is archived; the drill host needs no
``pgbackrest``. The restore point is not known before the recovery: it is what PostgreSQL
says it recovered to, recorded after it.

``backup.info`` is an INI file whose values are JSON (pgBackRest writes the ``[backrest]``
section twice: its checksum closes the file); ``backup.info.copy`` is read when the first is
missing or damaged, as pgBackRest itself does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import PhaseFailed
from harness.lab.share import Share
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources.files import FileLevelSource, Inspected

SHARE_TAG = "rdrill-pgbackrest"
#: the restore point until PostgreSQL has recovered (and for good if it never does)
NOT_RECOVERED = "it is what PostgreSQL recovers to, and no recovery completed"
INFO_MAX_BYTES = 64 * 1024 * 1024
TYPES = {"full": "full", "diff": "differential", "incr": "incremental"}


@dataclass(frozen=True)
class BackupSet:
    """One backup of ``backup.info``'s ``[backup:current]``."""

    label: str
    type: str  # full | diff | incr
    started: datetime
    stopped: datetime
    archive_start: str  # the first and last WAL segment the backup needs to be consistent
    archive_stop: str
    prior: str | None
    db_id: int


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


class InfoError(ValueError):
    """A pgBackRest info file that cannot be read."""


def parse_info(text: str) -> dict[str, dict[str, Any]]:
    """An info file's sections, each key's value decoded from JSON (sections seen twice
    are merged)."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            raise InfoError(f"line {number} is not 'key=value' in a [section]")
        try:
            current[key] = json.loads(value)
        except ValueError:
            raise InfoError(f"line {number}: the value of {key} is not JSON") from None
    return sections


def backup_sets(info: dict[str, dict[str, Any]]) -> list[BackupSet]:
    """The backups ``backup.info`` lists, oldest first."""
    sets = []
    for label, item in info.get("backup:current", {}).items():
        try:
            sets.append(BackupSet(
                label=label, type=str(item["backup-type"]),
                started=datetime.fromtimestamp(int(item["backup-timestamp-start"]), UTC),
                stopped=datetime.fromtimestamp(int(item["backup-timestamp-stop"]), UTC),
                archive_start=str(item.get("backup-archive-start") or ""),
                archive_stop=str(item.get("backup-archive-stop") or ""),
                prior=item.get("backup-prior"), db_id=int(item.get("db-id", 0)),
            ))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InfoError(f"backup {label}: {exc} is missing or not a number") from None
    return sorted(sets, key=lambda s: s.stopped)


def choose(sets: list[BackupSet], label: str | None, target_time: datetime | None) -> BackupSet:
    """The backup set a recovery starts from: the one named, else the newest that ended
    before the target time (a recovery cannot start from a backup that ended after it),
    else the newest."""
    if label is not None:
        named = [s for s in sets if s.label == label]
        if not named:
            raise PhaseFailed("verify", f"no backup set {label} in the repository (it holds "
                                        f"{', '.join(s.label for s in sets) or 'none'})")
        chosen = named[0]
        if target_time is not None and chosen.stopped > target_time:
            raise PhaseFailed("verify", f"backup set {label} ended at {_utc(chosen.stopped)}, "
                                        f"after target_time {target_time}: "
                                        "PostgreSQL cannot recover to a time before the end "
                                        "of the backup it starts from")  # fmt: skip
        return chosen
    usable = [s for s in sets if target_time is None or s.stopped <= target_time]
    if not usable:
        first = f"; the oldest ended at {_utc(sets[0].stopped)}" if sets else ""
        raise PhaseFailed("verify", f"no backup set ended before target_time {target_time} "
                                    f"({len(sets)} set(s){first})")  # fmt: skip
    return usable[-1]


class PgBackRestSource(FileLevelSource):
    """A stanza of a local pgBackRest repository, recovered into ``vm.image``."""

    tool = "pgbackrest"
    written_once_are = "backup set file(s) and WAL segment(s) (written once, never in place)"

    def __init__(self, spec: BackupSpec, vm: VmSpec) -> None:
        super().__init__(spec, vm)
        self.chosen: BackupSet | None = None
        self.stanza = spec.stanza or ""
        self.pg_path = spec.pg_path or ""
        self.pg_version = ""

    @property
    def repository(self) -> Path:
        assert self.spec.local_repository is not None  # noqa: S101 - the loader requires it
        return self.spec.local_repository

    @property
    def by_stat(self) -> tuple[str, ...]:
        """A backup set's folder (``backup/<stanza>/2…``) and the WAL archive's (one per
        database history: ``archive/<stanza>/15-1/``) are written once and never in place;
        the info files beside them are hashed."""
        if self.spec.verify_after == "full-hash" or not self.stanza:
            return ()
        archive = self.repository / "archive" / self.stanza
        histories = sorted(f"archive/{self.stanza}/{p.name}/" for p in archive.glob("*-*")
                           if p.is_dir())  # fmt: skip
        return (*histories, f"backup/{self.stanza}/2")

    def shares(self) -> tuple[Share, ...]:
        """The repository, read-only, for the guest's ``pgbackrest``."""
        return (Share(SHARE_TAG, self.repository),)

    def recovery(self) -> tuple[str, str]:
        """pgBackRest's recovery type and target (``--type``, ``--target``)."""
        if self.spec.target_time is not None:
            return "time", self.spec.target_time.isoformat(sep=" ")
        return ("immediate", "") if self.spec.recovery_target == "immediate" else ("default", "")

    def target_words(self) -> str:
        kind, value = self.recovery()
        return {"time": f"the time {value}",
                "immediate": "the end of the backup (immediate: no later WAL replayed)",
                "default": "the end of the archived WAL (latest)"}[kind]  # fmt: skip

    def integrity_argv(self, location: str) -> list[str]:
        """``pgbackrest verify``: every backup file and WAL segment read and checked against
        the checksums the repository records. ``--config=/dev/null``: the drill host's own
        pgBackRest configuration (if any) plays no part."""
        return ["pgbackrest", "--config=/dev/null", f"--repo1-path={location}",
                f"--stanza={self.stanza or '<stanza>'}", "--log-level-console=info",
                "--log-level-file=off", "--verbose", "verify"]  # fmt: skip

    def integrity_summary(self, output: str) -> str:
        said = [line.strip() for line in output.splitlines()
                if re.match(r"\s*(status|archiveId|backup|missing):", line)]  # fmt: skip
        return "; ".join(said) or super().integrity_summary(output)

    def integrity_problem(self, output: str) -> str:
        """pgBackRest 2.45's verify exits 0 and reports "status: error": the report decides."""
        return self.integrity_summary(output) if re.search(r"status: (error|invalid)", output) \
            else ""  # fmt: skip

    def _stanza(self) -> str:
        if self.stanza:
            return self.stanza
        found = sorted(p.name for p in (self.repository / "backup").glob("*") if p.is_dir())
        if len(found) != 1:
            raise PhaseFailed("verify", "set backup.stanza: the repository holds "
                                        f"{len(found)} stanzas ({', '.join(found) or 'none'})")
        return found[0]

    def _info(self, folder: Path, name: str) -> dict[str, dict[str, Any]]:
        """``name`` in ``folder``, or its ``.copy`` when it is missing or damaged."""
        problems = []
        for path in (folder / name, folder / f"{name}.copy"):
            try:
                if path.stat().st_size > INFO_MAX_BYTES:
                    raise InfoError("larger than 64 MiB")
                text = path.read_text(encoding="utf-8")
                if text.strip() and not text.lstrip().startswith("["):
                    raise PhaseFailed("verify", f"{path} is encrypted (repo1-cipher-type): "
                                                "restore-drill cannot read encrypted "
                                                "repositories yet")  # fmt: skip
                return parse_info(text)
            except FileNotFoundError:
                problems.append(f"{path.name}: missing")
            except (OSError, UnicodeDecodeError, InfoError) as exc:
                problems.append(f"{path.name}: {getattr(exc, 'strerror', None) or exc}")
        raise PhaseFailed("verify", f"no readable {name} in {folder} ({'; '.join(problems)})")

    def inspect(self) -> Inspected:
        self.stanza = stanza = self._stanza()
        where = self.repository / "backup" / stanza
        info = self._info(where, "backup.info")
        sets = backup_sets(info)
        if not sets:
            raise PhaseFailed("verify", f"stanza {stanza} has no backup")
        chosen = self.chosen = choose(sets, self.spec.backup_set, self.spec.target_time)
        db = info.get("db", {})
        self.pg_version = str(db.get("db-version", ""))
        self._check_wal(stanza, chosen)
        if not self.pg_path:
            self.pg_path = self._recorded_pg_path(where / chosen.label)
        chain = self._chain(sets, chosen)
        details = {
            "tool": "pgBackRest (restore run by the server's own pgbackrest, in the guest)",
            "stanza": stanza,
            "backup set": f"{chosen.label} ({TYPES.get(chosen.type, chosen.type)}, "
                          f"{_utc(chosen.started)} to {_utc(chosen.stopped)})"
                          + (f", on {' ← '.join(chain)}" if chain else ""),
            "recovery target": self.target_words(),
            "PostgreSQL": self.pg_version,
            "data directory": self.pg_path,
            "repository in the lab": "shared read-only (virtiofs over a read-only view)",
        }  # fmt: skip
        return Inspected(
            summary=f"pgBackRest stanza {stanza}: {len(sets)} backup set(s); set "
                    f"{chosen.label} recovers to {self.target_words()}",
            restore_point=None,
            restore_point_source=NOT_RECOVERED,
            details=details,
        )  # fmt: skip

    def _chain(self, sets: list[BackupSet], chosen: BackupSet) -> list[str]:
        """The sets a differential or incremental set builds on, newest first; each must
        still be in the repository."""
        by_label = {s.label: s for s in sets}
        chain, prior = [], chosen.prior
        while prior:
            if prior not in by_label:
                raise PhaseFailed("verify", f"backup set {chosen.label} builds on {prior}, "
                                            "which the repository no longer lists")
            chain.append(prior)
            prior = by_label[prior].prior
        return chain

    def _check_wal(self, stanza: str, chosen: BackupSet) -> None:
        """The WAL the backup needs to be consistent is in the archive (a backup without it
        cannot be recovered at all); what follows it is PostgreSQL's to find."""
        archive = self.repository / "archive" / stanza
        info = self._info(archive, "archive.info")
        db = info.get("db", {})
        version, db_id = db.get("db-version", self.pg_version), db.get("db-id", chosen.db_id)
        folder = archive / f"{version}-{db_id}"
        for segment in dict.fromkeys((chosen.archive_start, chosen.archive_stop)):
            if not segment:
                continue
            if not any((folder / segment[:16]).glob(f"{segment}-*")):
                raise PhaseFailed("verify", f"WAL segment {segment}, which backup set "
                                            f"{chosen.label} needs to be consistent, is not in "
                                            f"the archive ({folder})")  # fmt: skip

    @staticmethod
    def _recorded_pg_path(folder: Path) -> str:
        """The data directory the backup was taken of: ``pg_data`` in ``backup.manifest``'s
        ``[backup:target]`` (read up to that line: a manifest lists every file)."""
        for name in ("backup.manifest", "backup.manifest.copy"):
            try:
                with (folder / name).open(encoding="utf-8", errors="replace") as lines:
                    section = ""
                    for line in lines:
                        if line.startswith("["):
                            section = line.strip()
                        elif section == "[backup:target]" and line.startswith("pg_data="):
                            path = json.loads(line.partition("=")[2]).get("path")
                            if isinstance(path, str) and path.startswith("/"):
                                return path
            except (OSError, ValueError, AttributeError):
                continue
        raise PhaseFailed("verify", f"{folder}/backup.manifest names no data directory: "
                                    "set backup.pg_path")  # fmt: skip

    def _where(self) -> dict[str, str]:
        return {}

    def stream_command(self) -> list[str]:
        raise PhaseFailed("restore", "a pgBackRest backup is restored in the guest, not streamed")
