"""History page and verify with N runs in the ledger (default 10,000; target: under 5 s each,
and under 150 MB of memory: the commands run as the user runs them, in a process of their own).

Usage: .venv/bin/python benchmarks/history.py [--runs N]"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import median, save, timed
from harness.evidence.index import build_index
from harness.evidence.verify import verify_reports
from harness.evidence.writer import write_evidence
from tests.unit.test_evidence import result


def command(*args: str) -> tuple[float, int]:
    """Seconds and peak memory (KiB) of ``restore-drill ARGS`` in a process of its own."""
    seconds, proc = timed(lambda: subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "harness", *args],
        capture_output=True, text=True, check=False))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return seconds, int(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    runs = parser.parse_args().runs
    reports = Path(tempfile.mkdtemp(prefix="rdrill-bench-history-"))
    try:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(runs):
            run = replace(
                result("PASS" if i % 7 else "FAIL"),
                scenario=("web", "db", "mail", "erp")[i % 4],
                started_at=(start + timedelta(hours=6 * i)).isoformat(),
            )
            write_evidence(run, "s: 1\n", b"log\n", reports, [])
        index = [timed(lambda: build_index(reports))[0] for _ in range(3)]
        verify = []
        for _ in range(3):
            t, found = timed(lambda: verify_reports(reports))
            assert found.ok and found.runs == runs, found.problems[:3]
            verify.append(t)
        cli_index, index_kib = command("report", "index", str(reports))
        cli_verify, verify_kib = command("verify", str(reports))
        save(
            "history",
            {
                "runs": runs,
                "index_build_s": round(median(index), 3),
                "verify_s": round(median(verify), 3),
                "cli_report_index_s": round(cli_index, 3),
                "cli_verify_s": round(cli_verify, 3),
                "cli_report_index_peak_rss_mb": round(index_kib / 1024, 1),
                "cli_verify_peak_rss_mb": round(verify_kib / 1024, 1),
                "target": "< 5 s each with 10,000 runs; < 150 MB",
            },
        )
    finally:
        shutil.rmtree(reports)


if __name__ == "__main__":
    main()
