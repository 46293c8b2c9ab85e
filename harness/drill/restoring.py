"""Phases restore and restore proof (a file-level backup's tar stream into the guest, hashed
as it passes and proven in the guest), and pgBackRest's restore and recovery."""

from __future__ import annotations

from collections.abc import Callable

from harness.data.stream import StreamHasher, placement
from harness.drill.context import Drill
from harness.drill.dataproof import prove_stream, stream_not_proven
from harness.drill.machines import Guest
from harness.drill.recovery import recover, restore
from harness.remote.commands import Opener, stream_into
from harness.sources.files import FileLevelSource
from harness.sources.pgbackrest import PgBackRestSource


def restore_files(
    d: Drill, guest: Guest, source: FileLevelSource, check: Callable[[], None],
    link: Opener | None = None,
) -> None:  # fmt: skip
    """The backup's files streamed into the guest, each hashed here as it passes; then
    the same files hashed in the guest and compared (the restore proves its own bytes).
    ``link``: the bytes go over a TCP connection of their own (the rescue system's)."""
    clock, label, machine = d.clock, guest.label, guest.machine
    hasher = StreamHasher(placement(*source.layout()))
    try:
        with clock.phase(f"restore{label}") as phase, source.restore_stream() as tar:
            limit = machine.backup.restore_timeout_s
            sent = stream_into(
                guest.client, source.target, tar, limit, check, source.extract_args(), hasher.feed,
                link,
            )
            sub = machine.backup.subpath
            into = (
                f"the rebuilt disk (mounted at {source.target} in the rescue system)"
                if source.system
                else source.target
            )
            phase.detail = f"{sent} bytes of tar restored into {into}" + (
                f" (the backup's {sub})" if sub else ""
            ) + (" over a TCP connection of its own" if link else "")
    finally:
        entries, problem = hasher.finish()
    if source.system is not None:  # extracted --numeric-owner: owners compared by number
        entries = [e._replace(user="", group="") for e in entries]
    with clock.phase(f"restore proof{label}") as phase:
        if problem:
            phase.detail = f"not proven: {problem}"
            d.record(stream_not_proven(source.target, machine.name, bool(label), problem))
            return
        root = machine.login.user == "root" or source.system is not None  # the rescue's
        fat = (
            tuple(
                f"{f.mount.strip('/')}/".encode()
                for f in source.system[0].filesystems
                if f.fstype == "vfat"
            )
            if source.system
            else ()
        )
        proof, result = prove_stream(
            guest.client,
            entries,
            source.target,
            machine.name,
            bool(label),
            root,
            phase.name,
            check,
            machine.backup.restore_timeout_s,
            fat,
        )
        d.result.data.append(proof)
        d.record(result)
        phase.detail = result.observed
        if not proof.passed:
            phase.status = "failed"


def recover_database(
    d: Drill, guest: Guest, source: PgBackRestSource, check: Callable[[], None]
) -> None:
    """The server's own pgBackRest restore and PostgreSQL's WAL replay, each a phase of
    the recovery; the restore point becomes what PostgreSQL says it recovered to."""
    clock, label, machine = d.clock, guest.label, guest.machine
    root, limit = machine.login.user == "root", machine.backup.restore_timeout_s
    evidence = guest.evidence
    assert evidence is not None  # noqa: S101 - verified before
    with clock.phase(f"restore{label}") as phase:
        phase.detail = restore(guest.client, source, root, phase.name, limit, check)
    with clock.phase(f"recovery{label}") as phase:
        got = recover(guest.client, source, root, phase.name, limit, check)
        assert source.chosen is not None  # noqa: S101 - verified before
        if got.restore_point is not None:
            evidence.restore_point = got.restore_point.isoformat()
            evidence.restore_point_source = (
                "PostgreSQL: the last transaction it replayed (pg_last_xact_replay_timestamp)"
            )
        else:
            evidence.restore_point = source.chosen.stopped.isoformat()
            evidence.restore_point_source = (
                f"the end of backup set {source.chosen.label}"
                ": PostgreSQL replayed no transaction after "
                "it"
            )
        stopped = got.stopped_before()
        evidence.details["recovered to"] = evidence.restore_point + (
            f" (PostgreSQL {got.version}: {stopped})" if stopped else f" (PostgreSQL {got.version})"
        )
        if got.log:
            evidence.details["PostgreSQL recovery log"] = " | ".join(got.log)
        phase.detail = (
            f"PostgreSQL {got.version} promoted; restore point "
            f"{evidence.restore_point} ({evidence.restore_point_source})"
        )
