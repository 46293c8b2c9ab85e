"""Benchmarks that boot real VMs (run as root, inside the lab's network namespace):

* overhead: `restore-drill run` with one check vs baseline.sh, alternating, N runs each;
  the ratio of medians (target <= 1.03, issue 17; <= 1.05 before), and the harness-only
  time (target <= 1.5 s) with the medians of the phases it is made of. Also the peak RSS
  of the harness (target < 150 MB) and whether hashing the backup ever lengthened the
  recovery (it runs beside the boot).
* checks: 100 declarative checks on one VM (target < 3 s, one SSH connection).

Usage: nsenter --net=/run/netns/restore-drill .venv/bin/python benchmarks/drills.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEMO, ROOT, median, save, timed


def drill(scenario: Path, reports: Path) -> tuple[float, dict[str, object], int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds, proc = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "harness", "run", "--reports", str(reports), str(scenario)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    latest = sorted(p for p in reports.iterdir() if p.is_dir())[-1]
    report = json.loads((latest / "report.json").read_text())
    return seconds, report, max(peak_kib, before)


def baseline() -> float:
    out = subprocess.run(
        [
            str(ROOT / "benchmarks" / "baseline.sh"),
            str(DEMO / "web.qcow2"),
            str(DEMO / "demo_ed25519"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def phase(report: dict[str, object], name: str) -> dict[str, float]:
    phases = report["phases"]
    assert isinstance(phases, list)
    return next(p for p in phases if p["name"] == name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-checks", action="store_true", help="only the overhead part")
    args = parser.parse_args()
    reports = Path(tempfile.mkdtemp(prefix="rdrill-bench-reports-"))
    harness, bare, peaks, hash_margin, extra = [], [], [], [], []
    parts: dict[str, list[float]] = {"settle": [], "checks": [], "isolation": []}
    for _ in range(args.runs):
        bare.append(baseline())
        seconds, report, peak = drill(ROOT / "benchmarks" / "one-check.yaml", reports)
        harness.append(seconds)
        peaks.append(peak / 1024)
        shared = sum(phase(report, n)["duration_s"] for n in ("provision", "boot", "ssh"))
        extra.append(seconds - shared)  # what the baseline does not do at all
        for name, took in parts.items():
            took.append(phase(report, name)["duration_s"])
        hashed, booted = phase(report, "hash"), phase(report, "boot")
        hash_margin.append(
            booted["start_s"] + booted["duration_s"] - hashed["start_s"] - hashed["duration_s"]
        )
    save(
        "overhead",
        {
            "runs": args.runs,
            "baseline_s": [round(b, 1) for b in bare],
            "restore_drill_s": [round(h, 1) for h in harness],
            "ratio_of_medians": round(median(harness) / median(bare), 3),
            "target_ratio": "<= 1.03",
            "harness_only_s_median": round(median(extra), 2),
            "target_harness_only_s": "<= 1.5",
            **{f"{name}_s_median": round(median(took), 2) for name, took in parts.items()},
            "rest_s_median": round(median(extra) - sum(median(t) for t in parts.values()), 2),
            "peak_rss_mb": round(max(peaks), 1),
            "target_rss_mb": "< 150",
            "hash_done_before_lease_by_s": round(min(hash_margin), 1),
        },
    )
    if args.skip_checks:
        return
    _, report, _ = drill(ROOT / "benchmarks" / "100-checks.yaml", reports)
    checks = report["checks"]
    assert isinstance(checks, list)
    save(
        "checks",
        {
            "checks": len(checks),
            "passed": sum(c["passed"] for c in checks),
            "checks_phase_s": phase(report, "checks")["duration_s"],
            "one_ssh_connection": checks[-1]["passed"],
            "target": "< 3 s, one SSH connection",
        },
    )


if __name__ == "__main__":
    main()
