"""Proof of the data in real drills (boots VMs; run as root inside the lab's namespace):

* restore: a 256 MiB tar restored into the demo web VM, with and without the host hashing
  every file as the stream passes (alternating runs); the ratio of the restore phases'
  medians (target <= 1.10), and the restore proof phase (the guest hashing the same files);
* guest compare: a folder of 100,000 files in the guest compared with its 100,000-file
  manifest, the data phase's time (target < 10 s under software emulation).

Usage: nsenter --net=/run/netns/restore-drill .venv/bin/python benchmarks/data_proof.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEMO, median, save
from harness.data.manifest import Entry
from harness.data.stream import StreamHasher
from harness.drill import restoring
from harness.drill.pipeline import DrillOptions, run_drill
from harness.interrupts import Interrupts
from harness.scenario.loader import load_scenario

WORK = Path("/var/tmp/rdrill-bench-data")
FILES = 100_000
MTIME = 1_700_000_000

SCENARIO = """\
version: 1
name: bench-data-{name}
backup:
  kind: tar
  path: {tar}
  target: /srv/bench
targets: {{rto: 1h, rpo: 3650d}}
vm: {{image: {demo}/web.qcow2, memory: 1GiB, vcpus: 2, boot_timeout: 10m}}
login: {{user: root, key_file: {demo}/demo_ed25519, timeout: 5m}}
{extra}
checks:
  - name: the folder is there
    file: /srv/bench
"""
MANY = """\
restore_steps:
  - name: 100,000 small files
    timeout: 30m
    run: >-
      mkdir -p /srv/many && cd /srv/many &&
      seq 0 {last} | awk '{{ d = sprintf("d%02d", $1 % 100); if (!(d in made)) {{
      system("mkdir -p " d); made[d] = 1 }} print $1 > (d "/f" $1); close(d "/f" $1) }}' &&
      find /srv/many -type f -exec touch -h -d @{mtime} {{}} +
expect:
  manifest: {manifest}
  root: /srv/many
"""


class _NoHashing:
    """The stream hasher switched off: the restore as it was before its own proof."""

    def __init__(self, _placement: object) -> None:
        pass

    def feed(self, _chunk: bytes) -> None:
        pass

    def finish(self) -> tuple[list[Entry], str]:
        return [], "switched off for the benchmark"


def tar_of_random_files() -> Path:
    tar = WORK / "random-256m.tar"
    if not tar.exists():
        src = WORK / "random"
        src.mkdir(parents=True, exist_ok=True)
        for i in range(64):
            (src / f"f{i:02d}.bin").write_bytes(os.urandom(4 << 20))
        subprocess.run(["tar", "-C", str(src), "-cf", str(tar), "."], check=True)
        tar.chmod(0o644)
    return tar


def many_files_manifest() -> Path:
    """The manifest of the folder the scenario's restore step makes in the guest."""
    out = WORK / "many.manifest"
    if out.exists():
        return out
    src = WORK / "many"
    for i in range(FILES):
        folder = src / f"d{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_text(f"{i}\n")
    subprocess.run(["find", str(src), "-type", "f", "-exec", "touch", "-h", "-d", f"@{MTIME}",
                    "{}", "+"], check=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "harness", "manifest", str(src), "--as", "/srv/many",
                    "-o", str(out)], check=True, capture_output=True)  # fmt: skip
    return out


def drill(name: str, extra: str, hashing: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenario.yaml"
        path.write_text(SCENARIO.format(name=name, tar=tar_of_random_files(), demo=DEMO,
                                        extra=extra))  # fmt: skip
        scenario = load_scenario(path)
        with patch.object(restoring, "StreamHasher", StreamHasher if hashing else _NoHashing):
            outcome = run_drill(scenario, DrillOptions(), lambda _event: None, Interrupts())
    result = outcome.result
    assert result.verdict == "PASS", result.reason
    return {p.name: p.duration_s for p in result.phases}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare-only", action="store_true",
                        help="only the 100,000-file guest comparison (printed, not saved)")
    args = parser.parse_args()
    runs = args.runs
    WORK.mkdir(parents=True, exist_ok=True)
    if args.compare_only:
        manifest = many_files_manifest()
        for _ in range(runs):
            phases = drill("many", MANY.format(last=FILES - 1, mtime=MTIME, manifest=manifest),
                           True)  # fmt: skip
            print(f"guest compare of {FILES} files: {phases['data']:.1f} s")
        return
    with_hash, without, proof = [], [], []
    for _ in range(runs):
        phases = drill("hashed", "", True)
        with_hash.append(phases["restore"])
        proof.append(phases["restore proof"])
        without.append(drill("plain", "", False)["restore"])
    manifest = many_files_manifest()
    many = drill("many", MANY.format(last=FILES - 1, mtime=MTIME, manifest=manifest), True)
    save("data_proof", {
        "restore_256mib_with_hashing_s": round(median(with_hash), 1),
        "restore_256mib_without_hashing_s": round(median(without), 1),
        "ratio": round(median(with_hash) / median(without), 3),
        "ratio_target": "<= 1.10",
        "restore_proof_phase_s": round(median(proof), 1),
        "guest_compare_100000_files_s": round(many["data"], 1),
        "guest_compare_target": "< 10 s under TCG",
    })  # fmt: skip


if __name__ == "__main__":
    main()
