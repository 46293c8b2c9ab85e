"""Throughput: N one-VM drills (the demo web backup, one check; default 20) in one
``restore-drill run --parallel P``: total wall time, drills per hour, each drill's measured
recovery, and the host's memory while they ran (sampled every 0.5 s from /proc/meminfo: the
least MemAvailable, the most swap in use). The harness admits a drill only when the host's
available memory holds its VM (``--parallel`` is a ceiling); the figure shows whether it kept
the host from swapping.

Usage (root, where the labs run):
    nsenter --net=/run/netns/restore-drill .venv/bin/python benchmarks/throughput.py \
        [--drills 20] [--parallel 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, median, save


def meminfo() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) // 1024  # MiB
    return fields


class Sampler:
    """The least available memory and the most swap used while it runs."""

    def __init__(self) -> None:
        first = meminfo()
        self.total = first["MemTotal"]
        self.least_available = first["MemAvailable"]
        self.most_swap = first["SwapTotal"] - first["SwapFree"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            now = meminfo()
            self.least_available = min(self.least_available, now["MemAvailable"])
            self.most_swap = max(self.most_swap, now["SwapTotal"] - now["SwapFree"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drills", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    text = (ROOT / "benchmarks" / "one-check.yaml").read_text()
    with tempfile.TemporaryDirectory(prefix="rdrill-bench-throughput-") as work:
        folder = Path(work)
        files = []
        for n in range(args.drills):
            path = folder / f"web-{n:02d}.yaml"
            path.write_text(text.replace("name: bench-one-check", f"name: bench-web-{n:02d}"))
            files.append(str(path))
        reports = folder / "reports"
        sampler = Sampler()
        sampler.thread.start()
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--parallel", str(args.parallel),
             "--reports", str(reports), "--log-format", "text", *files],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        sampler.stop.set()
        sampler.thread.join()
        written = sorted(f / "report.json" for f in reports.iterdir())
        reports_json = [json.loads(f.read_text()) for f in written if f.exists()]
    verdicts = [r["verdict"] for r in reports_json]
    recovery = [r["rto"]["measured_s"] for r in reports_json if r["rto"]["measured_s"]]
    print(proc.stderr[-2000:] if proc.returncode else "", end="")
    save("throughput", {
        "drills": args.drills,
        "parallel": args.parallel,
        "exit_code": proc.returncode,
        "passed": verdicts.count("PASS"),
        "wall_s": round(wall, 1),
        "drills_per_hour": round(args.drills * 3600 / wall, 1),
        "recovery_s_median": round(median(recovery), 1) if recovery else None,
        "recovery_s_range": [min(recovery), max(recovery)] if recovery else None,
        "host_memory_mib": sampler.total,
        "least_available_mib": sampler.least_available,
        "peak_used_mib": sampler.total - sampler.least_available,
        "most_swap_used_mib": sampler.most_swap,
    })  # fmt: skip


if __name__ == "__main__":
    main()
