"""A whole application in one lab: the database first (restored from a pg_dump), the web
server only once the database is ready (its site from restic); the web VM's order page reads
the database by its production name, and stops answering when the database stops; the kept
lab answers on both VMs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.vm.conftest import (
    DEMO,
    ROOT,
    Drill,
    assert_backup_untouched,
    command,
    in_lab_ssh,
    run_cli,
)


def test_shop_with_a_dependency_passes_as_one_application(reports: Path) -> None:
    drill = run_cli(str(ROOT / "scenarios" / "demo-shop.yaml"), "--keep", reports=reports)
    try:
        check_the_kept_shop(drill)
    finally:  # the kept lab goes whatever the assertions found, and cleanup says so
        cleanup = subprocess.run(command("cleanup"), capture_output=True, text=True, check=True)
    for machine in drill.report["machines"]:
        assert f"removed domain {machine['domain']}" in cleanup.stdout


def check_the_kept_shop(drill: Drill) -> None:
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["verdict"] == "PASS"
    machines = {m["name"]: m for m in report["machines"]}
    assert [m["name"] for m in report["machines"]] == ["db", "web"]  # start order
    assert machines["web"]["depends_on"] == ["db"]
    assert machines["db"]["hostnames"] == ["db.shop.internal"]

    phases = {p["name"]: p for p in report["phases"]}
    db_ready = phases["step db: pg_restore the dump"]
    # Gated on readiness: the web VM was powered on only after the database was restored
    # (start and duration are each rounded to the millisecond).
    assert phases["boot web"]["start_s"] >= db_ready["start_s"] + db_ready["duration_s"] - 0.002
    # The recovery time covers the whole application, up to the last check, less the drill's
    # own preparation (reading each machine's network configuration before boot).
    last = phases["checks"]
    prep = report["preparation_s"]
    assert prep == phases["network"]["duration_s"]
    assert report["rto"]["measured_s"] >= round(last["start_s"] + last["duration_s"] - prep,
                                                1) - 0.1  # fmt: skip
    assert all(c["passed"] for c in report["checks"])
    assert "the web server's order page reads the restored database" in {
        c["name"] for c in report["checks"]}  # fmt: skip
    assert {a["target"].split(":")[0] for a in report["isolation"]} == {"db", "web"}
    assert all(a["outcome"] == "blocked" for a in report["isolation"])
    for machine in report["machines"]:
        assert_backup_untouched({"backup": machine["backup"]})

    lab_id = report["lab"]["lab_id"]
    assert f"restore-drill ssh {lab_id} --vm NAME" in drill.stderr
    lookup = in_lab_ssh(lab_id, "web", "getent", "hosts", "db.shop.internal")
    assert lookup.stdout.split()[0] == machines["db"]["ip"]

    # The order page really needs the database: with PostgreSQL stopped it answers 503.
    in_lab_ssh(lab_id, "db", "systemctl", "stop", "postgresql")
    page = in_lab_ssh(lab_id, "web", "curl", "-sS", "--max-time", "20", "-w", "%{http_code}",
                      "http://localhost/orders", check=False)  # fmt: skip
    assert page.stdout.endswith("503"), page.stdout
    assert "database unavailable" in page.stdout


PAIR = """\
version: 1
name: pair-of-web-servers
targets: {{rto: 20m, rpo: 365d}}
vm: {{memory: 768MiB, vcpus: 1, boot_timeout: 5m}}
login: {{user: root, key_file: {demo}/demo_ed25519, timeout: 3m}}
machines:
  - {{name: blue, backup: {{path: {demo}/web.qcow2}}}}
  - {{name: green, backup: {{path: {demo}/web.qcow2}}}}
checks:
  - {{name: blue serves its page, machine: blue, http: /, contains: order service}}
  - name: green reaches blue by its lab name
    machine: green
    command: curl -fsS --max-time 20 http://blue/
    stdout_matches: order service
"""


def test_independent_machines_boot_together(tmp_path: Path, reports: Path) -> None:
    scenario = tmp_path / "pair.yaml"
    scenario.write_text(PAIR.format(demo=DEMO))
    drill = run_cli(str(scenario), reports=reports)
    assert drill.exit_code == 0, drill.stderr
    phases = {p["name"]: p for p in drill.report["phases"]}
    blue, green = phases["boot blue"], phases["boot green"]
    # Neither waited for the other: both were powered on before either had its lease.
    assert max(blue["start_s"], green["start_s"]) < min(
        blue["start_s"] + blue["duration_s"], green["start_s"] + green["duration_s"])  # fmt: skip
    assert all(c["passed"] for c in drill.report["checks"])
