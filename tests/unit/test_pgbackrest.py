"""A pgBackRest repository read on the host (no pgbackrest here): which backup set a recovery
starts from, what verify refuses before anything boots, and how the guest's recovery report
becomes a restore point or a failure in PostgreSQL's own words. The files are laid out and
written as pgBackRest 2.45 writes them (the demo repository's, shortened)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.drill.recovery import parse
from harness.errors import PhaseFailed, PhaseTimeout
from harness.scenario.loader import ScenarioError, load_scenario
from harness.sources import Proof, open_source
from harness.sources.pgbackrest import InfoError, PgBackRestSource, backup_sets, choose, parse_info

FULL, DIFF = "20261201-010000F", "20261201-010000F_20261202-010000D"
STOP_FULL, STOP_DIFF = 1796086860, 1796173260  # 2026-12-01 01:01 and 2026-12-02 01:01 UTC


def backup_entry(start: int, stop: int, kind: str, segment: str, prior: str | None) -> str:
    return json.dumps({
        "backrest-format": 5, "backrest-version": "2.45", "backup-archive-start": segment,
        "backup-archive-stop": segment, "backup-error": False, "backup-prior": prior,
        "backup-timestamp-start": start, "backup-timestamp-stop": stop, "backup-type": kind,
        "db-id": 1, "option-archive-check": True,
    }, separators=(",", ":"))  # fmt: skip


def make_repository(root: Path, sets: tuple[str, ...] = (FULL, DIFF),
                    wal: tuple[str, ...] = ("000000010000000000000002",
                                            "000000010000000000000005")) -> Path:  # fmt: skip
    """A stanza "db": a full backup, then a differential one on it."""
    repo = root / "repo"
    stanza = repo / "backup" / "db"
    stanza.mkdir(parents=True)
    entries = {FULL: backup_entry(STOP_FULL - 60, STOP_FULL, "full", "000000010000000000000002",
                                  None),
               DIFF: backup_entry(STOP_DIFF - 60, STOP_DIFF, "diff", "000000010000000000000005",
                                  FULL)}  # fmt: skip
    (stanza / "backup.info").write_text(
        '[backrest]\nbackrest-format=5\nbackrest-version="2.45"\n\n[backup:current]\n'
        + "".join(f"{label}={entries[label]}\n" for label in sets)
        + '\n[db]\ndb-id=1\ndb-system-id=7714797852288103104\ndb-version="15"\n\n'
        '[backrest]\nbackrest-checksum="e2d4cadbcb0d69787e9faecb97dac4c9fa9c35a2"\n'
    )
    for label in sets:
        (stanza / label).mkdir()
        (stanza / label / "backup.manifest").write_text(
            '[backup]\nbackup-label="x"\n\n[backup:target]\n'
            'pg_data={"path":"/srv/pg/15/data","type":"path"}\n\n'
            '[target:file]\npg_data/PG_VERSION={"size":3}\n'
        )
    archive = repo / "archive" / "db"
    (archive / "15-1" / "0000000100000000").mkdir(parents=True)
    (archive / "archive.info").write_text('[db]\ndb-id=1\ndb-version="15"\n')
    for segment in wal:
        (archive / "15-1" / segment[:16] / f"{segment}-0123abcd.gz").write_bytes(b"wal")
    return repo


def pgbackrest_source(folder: Path, extra: str = "") -> PgBackRestSource:
    if not (folder / "base.qcow2").exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "base.qcow2"),
                        "16M"], check=True)  # fmt: skip
    (folder / "key").write_text("")
    scenario = folder / "s.yaml"
    scenario.write_text(
        "version: 1\nname: unit-pitr\nbackup:\n  kind: pgbackrest\n  repository: repo\n"
        f"{extra}targets: {{rto: 15m, rpo: 1d}}\nvm: {{image: base.qcow2}}\n"
        "login: {user: root, key_file: key}\n"
    )
    spec = load_scenario(scenario)
    made = open_source(spec.primary.backup, spec.primary.vm)
    assert isinstance(made, PgBackRestSource)
    return made


def test_an_info_file_is_ini_with_json_values_and_a_second_backrest_section() -> None:
    info = parse_info('[backrest]\nbackrest-format=5\n\n[db]\ndb-version="15"\n\n'
                      '[backrest]\nbackrest-checksum="ab"\n')  # fmt: skip
    assert info["backrest"] == {"backrest-format": 5, "backrest-checksum": "ab"}
    assert info["db"]["db-version"] == "15"
    with pytest.raises(InfoError, match="line 2"):
        parse_info("[db]\nnot a key value\n")
    with pytest.raises(InfoError, match="line 2: the value of db-version is not JSON"):
        parse_info("[db]\ndb-version=15.x\n")


def test_the_newest_set_that_ended_before_the_target_is_chosen(tmp_path: Path) -> None:
    info = parse_info((make_repository(tmp_path) / "backup/db/backup.info").read_text())
    sets = backup_sets(info)
    assert [s.label for s in sets] == [FULL, DIFF]
    assert sets[1].prior == FULL
    assert sets[1].type == "diff"
    assert choose(sets, None, None).label == DIFF
    between = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert choose(sets, None, between).label == FULL  # the diff ended after it
    with pytest.raises(PhaseFailed, match="no backup set ended before target_time"):
        choose(sets, None, datetime(2026, 11, 30, tzinfo=UTC))
    with pytest.raises(PhaseFailed, match=f"backup set {DIFF} ended at 2026-12-02 01:01:00 UTC, "
                                          "after target_time"):  # fmt: skip
        choose(sets, DIFF, between)
    with pytest.raises(PhaseFailed, match="no backup set 20261130-010000F in the repository"):
        choose(sets, "20261130-010000F", None)


def test_verify_names_the_set_its_chain_and_the_recorded_data_directory(tmp_path: Path) -> None:
    make_repository(tmp_path)
    evidence, _ = pgbackrest_source(tmp_path).verify()
    assert evidence.kind == "pgbackrest"
    assert evidence.restore_point == ""  # known only after PostgreSQL's recovery
    assert evidence.restore_point_source == "it is what PostgreSQL recovers to, and no " \
        "recovery completed"
    details = evidence.details
    assert details["stanza"] == "db"
    assert details["backup set"] == (f"{DIFF} (differential, 2026-12-02 01:00:00 UTC to "
                                     f"2026-12-02 01:01:00 UTC), on {FULL}")  # fmt: skip
    assert details["data directory"] == "/srv/pg/15/data"
    assert details["recovery target"] == "the end of the archived WAL (latest)"
    assert "restored into" not in details  # no tar stream lands anywhere


def test_verify_refuses_what_cannot_be_recovered(tmp_path: Path) -> None:
    make_repository(tmp_path, sets=(DIFF,))  # its full backup was expired
    with pytest.raises(PhaseFailed, match=f"builds on {FULL}, which the repository no longer"):
        pgbackrest_source(tmp_path).verify()

    other = tmp_path / "wal"
    other.mkdir()
    make_repository(other, wal=("000000010000000000000002",))
    with pytest.raises(PhaseFailed, match="WAL segment 000000010000000000000005, which backup "
                                          f"set {DIFF} needs to be consistent, is not in the "
                                          "archive"):  # fmt: skip
        pgbackrest_source(other).verify()

    encrypted = tmp_path / "encrypted"
    encrypted.mkdir()
    repo = make_repository(encrypted)
    (repo / "backup/db/backup.info").write_bytes(b"Salted__\x8f\x11")
    (repo / "backup/db/backup.info.copy").write_bytes(b"Salted__\x8f\x11")
    with pytest.raises(PhaseFailed, match="encrypted"):
        pgbackrest_source(encrypted).verify()


def test_a_damaged_backup_info_falls_back_to_its_copy(tmp_path: Path) -> None:
    repo = make_repository(tmp_path)
    info = repo / "backup/db/backup.info"
    (info.parent / "backup.info.copy").write_text(info.read_text())
    info.write_text("[backup:current]\ntruncated")
    evidence, _ = pgbackrest_source(tmp_path, "  stanza: db\n").verify()
    assert evidence.details["backup set"].startswith(DIFF)
    info.unlink()
    (info.parent / "backup.info.copy").unlink()
    with pytest.raises(PhaseFailed, match=r"no readable backup.info .*backup.info: missing; "
                                          r"backup.info.copy: missing"):  # fmt: skip
        pgbackrest_source(tmp_path).verify()


def test_target_time_and_a_named_set_reach_the_restore(tmp_path: Path) -> None:
    make_repository(tmp_path)
    src = pgbackrest_source(tmp_path, "  target_time: 2026-12-01T12:00:00+01:00\n"
                                      "  pg_path: /var/lib/postgresql/15/main\n")  # fmt: skip
    evidence, _ = src.verify()
    assert src.chosen is not None
    assert src.chosen.label == FULL
    assert src.recovery() == ("time", "2026-12-01 12:00:00+01:00")
    assert evidence.details["data directory"] == "/var/lib/postgresql/15/main"
    immediate = tmp_path / "immediate"
    immediate.mkdir()
    make_repository(immediate)
    src = pgbackrest_source(immediate, f"  set: {FULL}\n  recovery_target: immediate\n")
    src.verify()
    assert src.chosen is not None
    assert src.chosen.label == FULL
    assert src.recovery() == ("immediate", "")


@pytest.mark.parametrize(("extra", "field", "said"), [
    ("  restore_point: 2026-12-01T00:00:00Z\n", "backup.restore_point",
     "the restore point is what PostgreSQL recovers to"),
    ("  target_time: yesterday\n", "backup.target_time", "not an ISO 8601 time"),
    ("  target_time: 2026-12-01T00:00:00Z\n  recovery_target: immediate\n",
     "backup.recovery_target", "give target_time or recovery_target, not both"),
    ("  set: latest\n", "backup.set", "is not in the expected form"),
    ("  subpath: /var\n", "backup.subpath", "not used by a pgbackrest backup"),
])  # fmt: skip
def test_scenario_mistakes_are_located(tmp_path: Path, extra: str, field: str, said: str) -> None:
    make_repository(tmp_path)
    with pytest.raises(ScenarioError) as caught:
        pgbackrest_source(tmp_path, extra)
    assert field in str(caught.value), str(caught.value)
    assert said in str(caught.value), str(caught.value)


def test_a_remote_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base.qcow2").write_bytes(b"")
    (tmp_path / "key").write_text("")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "version: 1\nname: unit-pitr\nbackup:\n  kind: pgbackrest\n"
        "  repository: sftp:backup@host:/repo\ntargets: {rto: 15m, rpo: 1d}\n"
        "vm: {image: base.qcow2}\nlogin: {user: root, key_file: key}\n"
    )
    with pytest.raises(ScenarioError, match="shared into the lab read-only"):
        load_scenario(scenario)


def test_the_restore_point_is_what_postgresql_says() -> None:
    said = ("START|\nRECOVERED|f|2026-12-02T19:59:36.693437+00:00|15.18 (Debian 15.18-0+deb12u1)\n"
            "LOG|2026-12-02 20:00:43.047 UTC [355] LOG:  recovery stopping before commit of "
            "transaction 734, time 2026-12-02 19:59:40.77099+00\n")  # fmt: skip
    got = parse(said, "recovery", 60, "postgresql")
    assert got.restore_point == datetime(2026, 12, 2, 19, 59, 36, 693437, tzinfo=UTC)
    assert got.version == "15.18 (Debian 15.18-0+deb12u1)"
    assert got.stopped_before() == ("recovery stopping before commit of transaction 734, "
                                    "time 2026-12-02 19:59:40.77099+00")  # fmt: skip
    none = parse("RECOVERED|f||15.18\n", "recovery", 60, "postgresql")
    assert none.restore_point is None  # no transaction replayed after the backup


def test_a_recovery_that_stops_or_never_ends_fails_in_postgresqls_words() -> None:
    stopped = ("STOPPED\nLOG|2026-12-02 20:02:05.1 UTC [355] LOG:  starting point-in-time "
               "recovery to 2099-01-01 00:00:00+00\nLOG|2026-12-02 20:02:06.2 UTC [355] FATAL:  "
               "recovery ended before configured recovery target was reached\n")  # fmt: skip
    with pytest.raises(PhaseFailed) as failed:
        parse(stopped, "recovery", 60, "postgresql")
    assert failed.value.phase == "recovery"
    assert str(failed.value).endswith("PostgreSQL stopped during its recovery: FATAL: recovery "
                                      "ended before configured recovery target was reached")
    with pytest.raises(PhaseTimeout, match="had not finished its recovery after 60s: "
                                           "starting point-in-time"):  # fmt: skip
        parse("TIMEOUT\nLOG|x [1] LOG:  starting point-in-time recovery to y\n", "recovery", 60,
              "postgresql")  # fmt: skip
    with pytest.raises(PhaseFailed, match="see the postgresql@15-main log"):
        parse("STOPPED\n", "recovery", 60, "postgresql@15-main")


def test_sets_and_wal_are_proven_by_stat_and_any_write_is_caught(tmp_path: Path) -> None:
    """The info files are hashed; a set's files and WAL segments (written once) by name and
    stat, so a large repository is not read twice a night; a touched segment still fails."""
    repo = make_repository(tmp_path)
    src = pgbackrest_source(tmp_path)
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    assert evidence.details["repository proof"].startswith(
        "4 backup set file(s) and WAL segment(s) (written once, never in place) under "
        "archive/db/15-1/, backup/db/2 by name and stat")  # fmt: skip
    assert "2 other file(s) by SHA-256" in evidence.details["repository proof"]
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    segment = next((repo / "archive/db/15-1/0000000100000000").iterdir())
    os.utime(segment, ns=(0, 0))  # the mtime back to 1970: the ctime moves on regardless
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is False
