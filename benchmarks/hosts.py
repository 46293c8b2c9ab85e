"""Four one-VM drills (the demo web backup) with ``--parallel 4``: on this machine alone, then
spread over this machine and a second libvirt host (``scripts/lab-env.sh``'s
``start_second_host``: a host in namespaces of its own on the same machine, so the same CPUs).
Wall time of the whole run and each drill's measured recovery, alternating, N runs each.

What it shows on one machine: the cost of the remote protocol (qemu+ssh, volumes in a pool,
SSH through the host as jump host, hashing there), not a speed-up: both "hosts" share the
same cores. On two real hypervisors each host brings its own CPUs and memory.

Usage (as root): bash -c '. scripts/lab-env.sh; start_second_host hv2 10.250.0.2 10.250.0.1;
  in_lab .venv/bin/python benchmarks/hosts.py [--runs N]'
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, median, save, timed

STATE = Path("/var/lib/restore-drill-hosts/hv2")
INVENTORY = f"""\
hosts:
  - {{name: here, uri: "qemu:///system", slots: 2}}
  - name: hv2
    uri: "qemu+ssh://root@10.250.0.2/system?keyfile={STATE}/client_key&no_verify=1"
    known_hosts: {STATE}/known_hosts
    accelerator: tcg
    slots: 2
"""


def scenarios(folder: Path) -> list[str]:
    text = (ROOT / "scenarios" / "demo-web.yaml").read_text()
    (folder / "tests").mkdir()
    for test in (ROOT / "scenarios" / "tests").glob("*.py"):
        (folder / "tests" / test.name).write_text(test.read_text())
    files = []
    for name in ("web-a", "web-b", "web-c", "web-d"):
        path = folder / f"{name}.yaml"
        path.write_text(text.replace('default("demo-web")', f'default("{name}")'))
        files.append(str(path))
    return files


def run(files: list[str], reports: Path, hosts: Path | None) -> tuple[float, list[float]]:
    extra = ["--hosts", str(hosts)] if hosts else []
    seconds, proc = timed(lambda: subprocess.run(
        [sys.executable, "-m", "harness", "run", "--parallel", "4", "--reports", str(reports),
         *extra, *files], capture_output=True, text=True, cwd=ROOT, check=False))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = sorted(p for p in reports.iterdir() if p.is_dir())[-4:]
    rto = [json.loads((f / "report.json").read_text())["rto"]["measured_s"] for f in folders]
    return seconds, rto


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    runs = parser.parse_args().runs
    one: list[float] = []
    two: list[float] = []
    rto_one: list[float] = []
    rto_two: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = scenarios(folder)
        hosts = folder / "hosts.yaml"
        hosts.write_text(INVENTORY)
        for _ in range(runs):
            wall, rto = run(files, folder / "reports", None)
            one.append(wall)
            rto_one += rto
            wall, rto = run(files, folder / "reports", hosts)
            two.append(wall)
            rto_two += rto
    save("hosts", {
        "runs": runs,
        "one_host_wall_s": round(median(one), 1),
        "one_host_wall_range_s": [round(min(one), 1), round(max(one), 1)],
        "two_hosts_wall_s": round(median(two), 1),
        "two_hosts_wall_range_s": [round(min(two), 1), round(max(two), 1)],
        "one_host_rto_median_s": round(median(rto_one), 1),
        "two_hosts_rto_median_s": round(median(rto_two), 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()
