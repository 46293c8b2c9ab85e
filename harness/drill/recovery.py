"""Point-in-time recovery of PostgreSQL from a pgBackRest repository, in the guest: what a
DBA does on a rebuilt server, run over the drill's SSH connection.

``restore``: mount the repository share (read-only), stop the server, empty its data
directory and run the server's own ``pgbackrest restore`` of the chosen set, to the target,
with ``--archive-mode=off`` (the recovered server must never archive into the backup's
repository; the share refuses writes anyway). ``recover``: start the server, wait while it
replays WAL until it promotes, and ask it what it recovered to: the commit time of the last
transaction replayed (``pg_last_xact_replay_timestamp()``), which is the restore point the
RPO is judged on. Each is one command: the guest loops, the host waits (bounded, cancellable).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paramiko

from harness.errors import PhaseFailed, PhaseTimeout
from harness.remote.commands import run_capture
from harness.remote.shell import as_user
from harness.sources.pgbackrest import SHARE_TAG, PgBackRestSource

RUN = "/run/restore-drill"
MOUNT = f"{RUN}/pgbackrest"
CONFIG = f"{RUN}/pgbackrest.conf"
GRACE_S = 30.0  # the host's wait beyond the guest's own bound
NOT_RUNNING_S = 15  # no postmaster.pid this long after the start: the server stopped
STOP_WAIT_S = 120  # for the server to stop (a shutdown checkpoint, under emulation)
#: server log lines worth the evidence (PostgreSQL's own words on the recovery)
LOG_LINES = ("recovery stopping", "last completed transaction", "consistent recovery state",
             "redo done", "archive recovery complete", "recovery ended", "starting point-in-time",
             "starting archive recovery", "FATAL", "PANIC")  # fmt: skip

_RESTORE = r"""
set -eu
mkdir -p {mount} {run}/lock
if ! mountpoint -q {mount}; then
    mount -t virtiofs -o ro {tag} {mount} || {{
        echo "cannot mount the repository share (virtiofs, tag {tag}): the restored server's \
kernel needs virtiofs (Linux 5.4 or later)" >&2; exit 20; }}
fi
command -v pgbackrest >/dev/null || {{
    echo "pgbackrest is not installed on the restored server" >&2; exit 21; }}
owner=postgres
[ -d {pg} ] && owner=$(stat -c %U {pg})
id "$owner" >/dev/null 2>&1 || {{
    echo "the data directory's owner $owner is no user" >&2; exit 22; }}
chown "$owner" {run}/lock
printf '[global]\nrepo1-path=%s\nlock-path=%s\nlog-level-console=info\n' {mount} {run}/lock \
    >{config}
printf 'log-level-file=off\n[%s]\npg1-path=%s\n' {stanza} {pg} >>{config}
chmod 0644 {config}
systemctl stop {service} >/dev/null 2>&1 || true
waited=0   # a stop propagated to the cluster's own unit (Debian's PartOf) may still be running
while [ -f {pg}/postmaster.pid ] && kill -0 "$(head -1 {pg}/postmaster.pid)" 2>/dev/null; do
    if [ "$waited" -ge {stop_wait} ]; then
        echo "PostgreSQL still runs in {pg} {stop_wait}s after 'systemctl stop {service}': \
set backup.service" >&2
        exit 23
    fi
    sleep 1; waited=$((waited + 1))
done
if [ -d {pg} ]; then find {pg} -mindepth 1 -delete; else install -d -o "$owner" -m 0700 {pg}; fi
cd /
runuser -u "$owner" -- pgbackrest --config={config} --stanza={stanza} --set={label} {target} \
    --archive-mode=off restore 2>&1
"""

_RECOVER = r"""
set -u
pg={pg}
log=$(ls -t /var/log/postgresql/*.log 2>/dev/null | head -1)
seen=$( [ -n "$log" ] && wc -l <"$log" || echo 0)
owner=$(stat -c %U "$pg")
systemctl start {service} 2>&1 | tail -3 | sed 's/^/START|/'
end=$(( $(date +%s) + {limit} )); missing=0; state=TIMEOUT
while [ "$(date +%s)" -lt "$end" ]; do
    if [ -f "$pg/postmaster.pid" ]; then
        missing=0
        port=$(sed -n 4p "$pg/postmaster.pid"); sock=$(sed -n 5p "$pg/postmaster.pid")
        out=$(cd / && runuser -u "$owner" -- psql -h "${{sock:-localhost}}" -p "$port" -d postgres \
            -XAtq -F '|' -c "SELECT pg_is_in_recovery(), coalesce(to_char(
                pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC',
                'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), ''), current_setting('server_version')" \
            2>/dev/null) && case "$out" in f\|*) state="RECOVERED|$out"; break;; esac
    else
        missing=$((missing + 1))
        [ "$missing" -ge {not_running} ] && {{ state=STOPPED; break; }}
    fi
    sleep 1
done
echo "$state"
if [ -z "$log" ]; then log=$(ls -t /var/log/postgresql/*.log 2>/dev/null | head -1); seen=0; fi
if [ -n "$log" ]; then
    tail -n +$((seen + 1)) "$log" | grep -E '{lines}' | tail -12 | sed 's/^/LOG|/'
else
    journalctl -u {service} --no-pager -n 200 2>/dev/null | grep -E '{lines}' | tail -12 \
        | sed 's/^/LOG|/'
fi
"""


@dataclass(frozen=True)
class Recovered:
    """What PostgreSQL said after its recovery."""

    restore_point: datetime | None  # the last transaction replayed; None: none was
    version: str
    log: tuple[str, ...]  # its own lines on the recovery, from the server log

    def stopped_before(self) -> str:
        """The first transaction *not* recovered (a time target), in PostgreSQL's words."""
        return next((line for line in self.log if "recovery stopping" in line), "")


def _wrap(script: str, root: bool) -> str:
    command = f"sh -c {shlex.quote(script)}"
    return command if root else as_user(script, "root", root=False)


def restore(client: paramiko.SSHClient, source: PgBackRestSource, root: bool, phase: str,
            timeout_s: float, cancelled: Callable[[], None]) -> str:  # fmt: skip
    """The chosen set restored into the data directory; what pgbackrest said it restored."""
    assert source.chosen is not None  # noqa: S101 - verified before
    kind, value = source.recovery()
    target = f"--type={kind}" + (f" --target={shlex.quote(value)}" if value else "") + \
        (" --target-action=promote" if kind != "default" else "")  # fmt: skip
    script = _RESTORE.format(
        mount=MOUNT, run=RUN, tag=SHARE_TAG, pg=shlex.quote(source.pg_path), config=CONFIG,
        stanza=shlex.quote(source.stanza), service=shlex.quote(source.spec.service),
        label=shlex.quote(source.chosen.label), target=target, stop_wait=STOP_WAIT_S,
    )  # fmt: skip
    status, out, err = run_capture(client, phase, _wrap(script, root), timeout_s, cancelled)
    said = out.decode(errors="replace")
    if status != 0:
        lines = [ln.strip() for ln in (err + "\n" + said).splitlines() if ln.strip()]
        worst = next((ln for ln in reversed(lines) if "ERROR" in ln), lines[-1] if lines else "")
        raise PhaseFailed(phase, f"the restore failed (exit {status}): {worst}", output=said)
    size = re.search(r"restore size = ([^,]+), file total = (\d+)", said)
    done = f"{size.group(2)} files, {size.group(1)}" if size else "restored"
    return (f"backup set {source.chosen.label} ({done}) restored into {source.pg_path} by the "
            f"server's pgbackrest; recovery target: {source.target_words()}")  # fmt: skip


def recover(client: paramiko.SSHClient, source: PgBackRestSource, root: bool, phase: str,
            timeout_s: float, cancelled: Callable[[], None]) -> Recovered:  # fmt: skip
    """Start the server and wait until it has replayed WAL and promoted; what it says."""
    script = _RECOVER.format(
        pg=shlex.quote(source.pg_path), service=shlex.quote(source.spec.service),
        limit=int(timeout_s), not_running=NOT_RUNNING_S, lines="|".join(LOG_LINES),
    )  # fmt: skip
    _, out, _ = run_capture(client, phase, _wrap(script, root), timeout_s + GRACE_S, cancelled)
    return parse(out.decode(errors="replace"), phase, timeout_s, source.spec.service)


def _message(line: str) -> str:
    """A server log line without its prefix (time, pid): ``FATAL:  …`` keeps its level."""
    match = re.match(r"^.*?\b(LOG|FATAL|PANIC|ERROR|WARNING):\s+(.*)$", line.strip())
    if match is None:
        return line.strip()
    return match.group(2) if match.group(1) == "LOG" else f"{match.group(1)}: {match.group(2)}"


def parse(said: str, phase: str, timeout_s: float, service: str) -> Recovered:
    """The recovery command's report: its state line and the server log's lines."""
    lines = said.splitlines()
    log = tuple(_message(ln[4:]) for ln in lines if ln.startswith("LOG|"))
    state = next((ln for ln in lines if ln.startswith(("RECOVERED|", "TIMEOUT", "STOPPED"))), "")
    worst = next((ln for ln in reversed(log) if "FATAL" in ln or "PANIC" in ln),
                 log[-1] if log else "")  # fmt: skip
    if state.startswith("RECOVERED|"):
        _, _, stamp, version = [*state.split("|"), "", "", ""][:4]
        try:
            point = datetime.fromisoformat(stamp) if stamp else None
        except ValueError:
            raise PhaseFailed(phase, f"PostgreSQL answered an unreadable time: {stamp!r}") from None
        return Recovered(point, version, log)
    if state == "STOPPED":
        started = " | ".join(ln[6:] for ln in lines if ln.startswith("START|"))
        raise PhaseFailed(phase, "PostgreSQL stopped during its recovery: "
                                 + (worst or started or f"see the {service} log"))  # fmt: skip
    raise PhaseTimeout(phase, f"PostgreSQL had not finished its recovery after "
                              f"{timeout_s:g}s" + (f": {worst}" if worst else ""))  # fmt: skip
