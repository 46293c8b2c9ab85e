"""History page and verify with 1,000 runs in the ledger (target: under 2 s each)."""

from __future__ import annotations

import shutil
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

RUNS = 1000


def main() -> None:
    reports = Path(tempfile.mkdtemp(prefix="rdrill-bench-history-"))
    try:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(RUNS):
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
            assert found.ok and found.runs == RUNS, found.problems[:3]
            verify.append(t)
        save(
            "history",
            {
                "runs": RUNS,
                "index_build_s": round(median(index), 3),
                "verify_s": round(median(verify), 3),
                "target": "< 2 s each",
            },
        )
    finally:
        shutil.rmtree(reports)


if __name__ == "__main__":
    main()
