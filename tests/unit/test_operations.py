"""Running it the way operations does, without VMs: many scenarios, the run lock, unattended
log formats, the live display on a real pseudo-terminal. Drills here either fail at verify
(a damaged backup, no libvirt needed) or run against libvirt's test:///default driver, whose
"VM" has an address nobody answers on, so the drill waits for SSH up to its login timeout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.evidence.verify import verify_reports
from tests.conftest import VALID

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(harness("run", "--connect", "test:///default", *args),
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def scenario(folder: Path, name: str, damaged: bool = False, login_timeout: str = "4s") -> Path:
    """A scenario in ``folder`` (which holds backup.qcow2 and id_ed25519): it fails at verify
    when ``damaged``, else it waits ``login_timeout`` for an SSH that never answers."""
    backup = "backup.qcow2"
    if damaged:
        backup = f"{name}-damaged.qcow2"
        data = bytearray((folder / "backup.qcow2").read_bytes())
        data[0:4] = b"QFI\x00"
        (folder / backup).write_bytes(bytes(data))
    text = (VALID.replace("name: unit-web", f"name: {name}")
            .replace("path: backup.qcow2", f"path: {backup}")
            .replace("vcpus: 1", "vcpus: 1\n  accelerator: tcg")
            .replace("login:", f"login:\n  timeout: {login_timeout}"))  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_without_a_tty_every_line_is_timestamped_plain_text(scenario_dir: Path, tmp_path: Path):
    proc = run("--reports", str(tmp_path / "r"), str(scenario(scenario_dir, "plain", True)))
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines, "no log at all"
    for line in lines:
        assert STAMP.match(line), f"not a timestamped line: {line!r}"
        assert "\x1b" not in line  # no colours or cursor movement in a log file
    assert any("[plain] verify: failed" in line for line in lines)
    assert any(re.search(r"\[plain\] FAIL: verify: ", line) for line in lines)
    assert any("[plain] evidence: " in line for line in lines)


def test_json_log_lines_are_events_ending_in_the_verdict(scenario_dir: Path, tmp_path: Path):
    path = scenario(scenario_dir, "jsonlog", True)
    proc = run("--reports", str(tmp_path / "r"), "--log-format", "json", str(path))
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["kind"] for e in events[:2]] == ["drill", "phase"]
    assert events[0]["rto_s"] == 900
    assert {e["scenario"] for e in events} == {"jsonlog"}
    verdict = next(e for e in events if e["kind"] == "verdict")
    assert verdict["status"] == "FAIL"
    assert verdict["exit_code"] == 1
    assert (Path(verdict["report"]) / "report.json").is_file()
    assert all(re.fullmatch(r"\S+T\S+Z", e["time"]) for e in events)


def test_two_concurrent_runs_of_one_scenario_never_collide(scenario_dir: Path, tmp_path: Path):
    """The first holds the scenario; a second exits 75 at once naming the holder; a third
    with --wait-lock waits for the first to finish and then drills."""
    reports = tmp_path / "r"
    path = str(scenario(scenario_dir, "locked", login_timeout="6s"))
    first = subprocess.Popen(harness("run", "--connect", "test:///default", "--reports",
                                     str(reports), path),
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert first.stderr is not None
    for line in first.stderr:
        if "ssh: started" in line:
            break
    waiter = subprocess.Popen(harness("run", "--connect", "test:///default", "--reports",
                                      str(reports), "--wait-lock", "2m", path),
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    started = time.monotonic()
    second = run("--reports", str(reports), path, timeout=30)
    assert time.monotonic() - started < 15  # did not wait for the first
    assert second.returncode == 75, second.stderr
    assert f"already being drilled by pid {first.pid}" in second.stderr
    assert "SKIPPED" in second.stderr
    rest = first.stderr.read()
    first.stderr.close()
    assert first.wait(timeout=60) == 1, rest
    _, waiter_log = waiter.communicate(timeout=90)
    assert waiter.returncode == 1, waiter_log
    assert "drill started" in waiter_log
    folders = sorted(p.name for p in reports.iterdir() if p.is_dir())
    assert len(folders) == 2  # the first and the waiter; the skipped run wrote none
    entries = [json.loads(x) for x in (reports / "ledger.jsonl").read_text().splitlines()]
    assert entries[0]["time"] < entries[1]["time"]  # one after the other, not both at once
    assert verify_reports(reports).ok


def test_parallel_run_of_a_folder_summarises_all_and_one_failure_stops_none(
    scenario_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name in ("par-a", "par-b", "par-c"):
        source = scenario(scenario_dir, name, damaged=name == "par-b", login_timeout="3s")
        source.rename(folder / source.name)
    for file in ("backup.qcow2", "id_ed25519", "par-b-damaged.qcow2"):
        (scenario_dir / file).rename(folder / file)
    reports = tmp_path / "r"
    proc = run("--reports", str(reports), "--parallel", "3", str(folder))
    assert proc.returncode == 1, proc.stderr
    assert "3 drills: 3 FAIL; exit 1" in proc.stderr
    lines = proc.stderr.splitlines()
    for name in ("par-a", "par-b", "par-c"):
        assert any(f"[{name}] FAIL: " in line for line in lines), name
    assert any("[par-b] FAIL: verify:" in line for line in lines)
    assert any("[par-a] FAIL: ssh:" in line for line in lines)
    # They ran side by side: both test-driver drills were waiting for SSH at the same time.
    a_start = next(i for i, x in enumerate(lines) if "[par-a] ssh: started" in x)
    c_start = next(i for i, x in enumerate(lines) if "[par-c] ssh: started" in x)
    a_end = next(i for i, x in enumerate(lines) if "[par-a] ssh: timeout" in x)
    assert c_start < a_end
    assert a_start < a_end
    assert len([p for p in reports.iterdir() if p.is_dir()]) == 3
    assert verify_reports(reports).ok


def test_sample_drills_a_reproducible_random_subset(scenario_dir: Path, tmp_path: Path):
    paths = [str(scenario(scenario_dir, f"pick-{n}", damaged=True)) for n in range(5)]
    picks = []
    for _ in range(2):
        proc = run("--reports", str(tmp_path / "r"), "--sample", "2", "--seed", "7", *paths)
        assert proc.returncode == 1
        line = next(x for x in proc.stderr.splitlines() if "sampled 2 of 5 scenarios" in x)
        assert "(--seed 7)" in line
        picks.append(line.split(": ", 1)[1])
        assert proc.stderr.count("drill started") == 2
    assert picks[0] == picks[1]


def test_live_display_on_a_terminal(scenario_dir: Path, tmp_path: Path) -> None:
    """On a real pseudo-terminal the default is the live display: phases, the RTO clock,
    the checks and the verdict, drawn with terminal control sequences."""
    path = scenario(scenario_dir, "live", login_timeout="3s")
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        harness("run", "--connect", "test:///default", "--reports", str(tmp_path / "r"),
                str(path)),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen  # drawn, not logged
    for text in ("time against RTO", "live", "ssh", "/ 15m", "FAIL"):
        assert text in screen, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "verify: ok in" in plain


@pytest.mark.parametrize("flag", ["--parallel=0", "--sample=0", "--wait-lock=soon"])
def test_bad_run_options_exit_2(scenario_dir: Path, flag: str) -> None:
    proc = run(flag, str(scenario_dir / "scenario.yaml"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_ssh_without_a_kept_lab_says_how_to_keep_one() -> None:
    proc = subprocess.run(harness("ssh"), capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "need exactly one lab kept; found: none" in proc.stderr
    assert "run with --keep" in proc.stderr


def parallel_pair(folder: Path, prefix: str, reports: Path, *options: str) -> subprocess.Popen[str]:
    """Two drills run in parallel, each waiting for an SSH login that never comes (2 min):
    returned once both are waiting."""
    paths = [str(scenario(folder, f"{prefix}-{n}", login_timeout="2m")) for n in (1, 2)]
    proc = subprocess.Popen(
        harness("run", "--connect", "test:///default", "--reports", str(reports),
                "--parallel", "2", *options, *paths),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    waiting: set[str] = set()
    for line in proc.stderr:
        if "ssh: started" in line:
            waiting.add(line.split("[", 1)[1].split("]", 1)[0])
        if waiting == {f"{prefix}-1", f"{prefix}-2"}:
            break
    return proc


def test_sigterm_to_a_parallel_run_aborts_every_drill_cleanly(
    scenario_dir: Path, tmp_path: Path
) -> None:
    """systemd stops the service, or an admin kills the parent: each child drill aborts,
    tears its lab down and writes its ABORTED report; the run exits 130."""
    import signal

    reports = tmp_path / "r"
    proc = parallel_pair(scenario_dir, "term", reports)
    assert proc.stderr is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130, rest
    assert time.monotonic() - started < 30  # not the 2-minute login wait
    for name in ("term-1", "term-2"):
        assert f"[{name}] ABORTED: the drill was interrupted by SIGTERM" in rest
    verdicts = [json.loads((f / "report.json").read_text())["verdict"]
                for f in reports.iterdir() if f.is_dir()]  # fmt: skip
    assert verdicts == ["ABORTED", "ABORTED"]
    labs = Path(os.environ["RESTORE_DRILL_STATE_DIR"]) / "labs"
    assert not labs.exists() or not any(labs.iterdir())  # every lab torn down


def _child_of(parent: int, marker: str) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and marker.encode() in cmdline:
            return int(stat.parent.name)
    raise AssertionError(f"no child of {parent} runs {marker}")


def test_a_child_that_does_not_stop_is_killed_after_the_grace_and_its_lab_reaped(
    scenario_dir: Path, tmp_path: Path
) -> None:
    """A drill stuck where a signal cannot reach it (here: a stopped process; in life a hung
    libvirtd or NFS) must not hold the run forever: SIGKILL after --stop-grace, its lab
    reaped, and a report saying so."""
    import signal

    reports = tmp_path / "r"
    proc = parallel_pair(scenario_dir, "stuck", reports, "--stop-grace", "3s")
    assert proc.stderr is not None
    stuck = _child_of(proc.pid, "stuck-1.yaml")
    os.kill(stuck, signal.SIGSTOP)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 130, rest
    assert time.monotonic() - started < 20
    assert "[stuck-1] did not stop within 3.0s of SIGTERM: killed (SIGKILL)\n" in rest
    assert "[stuck-2] ABORTED: the drill was interrupted by SIGTERM" in rest
    found = {json.loads((f / "report.json").read_text())["scenario"]:
             json.loads((f / "report.json").read_text()) for f in reports.iterdir() if f.is_dir()}
    assert found["stuck-1"]["verdict"] == "ABORTED"
    # Said once the lab is gone, not promised before.
    assert found["stuck-1"]["reason"] == (
        "did not stop within 3.0s of SIGTERM: killed (SIGKILL); its lab was reaped")
    assert found["stuck-2"]["verdict"] == "ABORTED"
    labs = Path(os.environ["RESTORE_DRILL_STATE_DIR"]) / "labs"
    assert not labs.exists() or not any(labs.iterdir())  # the killed drill's lab reaped too


def test_parallel_drills_wait_for_memory_instead_of_overcommitting(
    scenario_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one VM only, --parallel 2 runs the drills one after the other and says
    why; the scheduler reads the host's MemAvailable (here pretended small)."""
    from harness import batch
    from harness.interrupts import Interrupts
    from harness.output.events import Event
    from harness.scenario.loader import load_scenario

    scenarios = [load_scenario(scenario(scenario_dir, f"mem-{n}", login_timeout="2s"))
                 for n in (1, 2)]  # fmt: skip
    need = batch.need_mib(scenarios[0])
    monkeypatch.setattr(batch, "free_memory_mib", lambda: batch.HOST_RESERVE_MIB + need + 100)
    events: list[Event] = []
    argv = batch.child_command({"--connect": "test:///default",
                                "--reports": scenario_dir / "r"})  # fmt: skip
    finished = batch.run_in_children(scenarios, argv, 2, events.append, Interrupts())
    assert [f.verdict for f in finished] == ["FAIL", "FAIL"]
    notes = [e.message for e in events if e.kind == "batch"]
    assert notes == [f"mem-2 waits for memory: it needs {need} MiB, 100 MiB of "
                     f"{need + 100} MiB are free for drills"]  # fmt: skip
    order = [(e.scenario, e.kind) for e in events if e.kind in ("drill", "verdict")]
    assert order == [("mem-1", "drill"), ("mem-1", "verdict"), ("mem-2", "drill"),
                     ("mem-2", "verdict")]  # fmt: skip


def test_ssh_finds_the_kept_lab_of_a_run_and_pins_its_host_key(tmp_path: Path) -> None:
    """`restore-drill ssh RUN -- cmd` runs OpenSSH with the lab's recorded host key; a stand-in
    `ssh` on PATH prints the arguments it was given."""
    state = Path(os.environ["RESTORE_DRILL_STATE_DIR"])
    lab = state / "labs" / "0badc0de"
    lab.mkdir(parents=True)
    ssh_args = ["-i", "/k", "-p", "22", "-o", f"UserKnownHostsFile={lab}/known_hosts",
                "-o", "StrictHostKeyChecking=yes", "root@10.213.9.10"]  # fmt: skip
    (lab / "lab.json").write_text(json.dumps({
        "lab_id": "0badc0de", "scenario": "demo-shop", "uri": "qemu:///system", "pid": 1,
        "pid_start": None, "created": 0, "kept": True, "ssh": ssh_args,
        "machines": {"db": ssh_args, "web": [*ssh_args[:-1], "root@10.213.9.11"]},
    }))  # fmt: skip
    run_folder = tmp_path / "reports" / "2026-11-23T020000Z_demo-shop"
    run_folder.mkdir(parents=True)
    (run_folder / "report.json").write_text(json.dumps({"lab": {"lab_id": "0badc0de"}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(harness("ssh", "--reports", str(tmp_path / "reports"), run_folder.name,
                                  "--vm", "web", "--", "hostname"),
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [*ssh_args[:-1], "root@10.213.9.11", "hostname"]
    unknown = subprocess.run(harness("ssh", "0badc0de", "--vm", "cache"), capture_output=True,
                             text=True, env=env, check=False)  # fmt: skip
    assert unknown.returncode == 2
    assert "lab 0badc0de has no VM 'cache'; it has: db, web" in unknown.stderr
