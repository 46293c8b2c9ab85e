"""A whole application in one lab: the database first (restored from a pg_dump), the web
server only once the database is ready (its site from restic); the web VM reaches the
database by its production name; the kept lab answers on both VMs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.vm.conftest import ROOT, Drill, assert_backup_untouched, command, run_cli


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
    # The recovery time covers the whole application, up to the last check.
    last = phases["checks"]
    assert report["rto"]["measured_s"] >= round(last["start_s"] + last["duration_s"], 1) - 0.1
    assert all(c["passed"] for c in report["checks"])
    assert {a["target"].split(":")[0] for a in report["isolation"]} == {"db", "web"}
    assert all(a["outcome"] == "blocked" for a in report["isolation"])
    for machine in report["machines"]:
        assert_backup_untouched({"backup": machine["backup"]})

    lab_id = report["lab"]["lab_id"]
    assert f"restore-drill ssh {lab_id} --vm NAME" in drill.stderr
    lookup = subprocess.run(command("ssh", lab_id, "--vm", "web", "--", "getent", "hosts",
                                    "db.shop.internal"), capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert lookup.returncode == 0, lookup.stderr
    assert lookup.stdout.split()[0] == machines["db"]["ip"]
