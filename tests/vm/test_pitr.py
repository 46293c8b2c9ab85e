"""Point-in-time recovery from the demo pgBackRest repository, three labs side by side: to
the target time between two batches of payments (150 rows: the first batch, not the
second), to the end of the WAL with the scenario `restore-drill init` wrote (200 rows), and
to a time the archive never reaches (FAIL in
PostgreSQL's own words, restore point unknown). The restore point of each is what PostgreSQL
recovered to, and every file of the repository keeps its content, mode, owner and ctime,
checked here independently of the drill's own proof."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

from tests.vm.conftest import DEMO, ROOT, assert_backup_untouched, command, drills_together

PITR = str(ROOT / "scenarios" / "demo-db-pitr.yaml")
REPOSITORY = DEMO / "pgbackrest-repo"


def stat_everything(folder: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry's mode, owner, group, size and ctime (nanoseconds)."""
    found = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = os.lstat(path)
        found[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ctime_ns)
    return found


def first_scenario(scratch: Path, rows: int) -> Path:
    """What `restore-drill init --kind pgbackrest` writes for the demo repository (to the end
    of the WAL, the drill's key injected), with one check of the data added."""
    init = subprocess.run(
        command("init", "--kind", "pgbackrest", str(REPOSITORY), "--base-image",
                str(DEMO / "db.qcow2"), "--key", str(scratch / "drill_ed25519"),
                "--name", "ledger-first"),
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert '  pg_path: "/var/lib/postgresql/15/main"' in init.stdout  # as the backup recorded
    scenario = scratch / "ledger-first.yaml"
    count = "psql -d ledger -tAc 'SELECT count(*) FROM payments'"
    scenario.write_text(f"{init.stdout}  - name: every payment is back\n    command: {count}\n"
                        f"    user: postgres\n    stdout_matches: \"^{rows}$\"\n")  # fmt: skip
    return scenario


def test_point_in_time_recovery_from_pgbackrest(tmp_path: Path, scratch: Path) -> None:
    pitr = json.loads((DEMO / "pitr.json").read_text())
    before = stat_everything(REPOSITORY)
    assert any(st[1] != 0 for st in before.values())  # owned by postgres, as on a server
    runs = {
        "time": (PITR, "--var", "integrity=yes"),
        "latest": (str(first_scenario(scratch, pitr["rows_latest"])),),
        "beyond": (PITR, "--var", "target_time=2099-01-01T00:00:00Z",
                   "--var", "name=demo-db-pitr-beyond"),
    }  # fmt: skip
    drills = drills_together(runs, tmp_path)
    assert stat_everything(REPOSITORY) == before

    target = datetime.fromisoformat(pitr["target_time"])
    at_time = drills["time"]
    assert at_time.exit_code == 0, at_time.stderr
    report = at_time.report
    assert [c["passed"] for c in report["checks"]] == [True, True, True], report["checks"]
    backup = report["backup"]
    point = datetime.fromisoformat(backup["restore_point"])
    assert point <= target  # the last transaction replayed: the first batch's commit
    assert backup["restore_point_source"].startswith("PostgreSQL: the last transaction")
    assert "recovery stopping before commit" in backup["details"]["recovered to"]
    assert report["rpo"]["detail"].startswith(f"restore point {backup['restore_point']}")
    names = [p["name"] for p in report["phases"]]
    assert names.index("integrity") < names.index("boot")  # pgbackrest verify, before boot
    assert names.index("restore") < names.index("recovery") < names.index("checks")
    assert "status: ok" in backup["details"]["integrity check"]
    assert_backup_untouched(report)

    latest = drills["latest"]  # the scenario init wrote: every check passed, 200 rows
    assert latest.exit_code == 0, latest.stderr
    assert all(c["passed"] for c in latest.report["checks"]), latest.report["checks"]
    latest_point = datetime.fromisoformat(latest.report["backup"]["restore_point"])
    assert latest_point > target > point  # the second batch came back too
    assert "time" not in latest.report["backup"]["details"]["recovery target"]

    beyond = drills["beyond"]
    assert beyond.exit_code == 1, beyond.stderr
    failed = beyond.report
    assert failed["reason"] == ("recovery: PostgreSQL stopped during its recovery: FATAL: "
                                "recovery ended before configured recovery target was reached")
    assert failed["backup"]["restore_point"] == ""
    assert failed["rpo"]["detail"] == "restore point unknown"
    assert not failed["checks"]
    assert_backup_untouched(failed)
