"""Instant restore is O(1): provisioning (overlay, network, domain definition) for a 1 GB and
a 50 GB sparse backup (target: under 1 s, within 10% of each other), against the full-copy
alternative (copying the backup before booting it).

Usage (root, where the labs run):
    nsenter --net=/run/netns/restore-drill .venv/bin/python benchmarks/provision.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import median, save, timed
from harness import qemu_img
from harness.lab.hypervisor import Hypervisor
from harness.lab.lifecycle import Lab, VmDisk

RUNS = 5
WORK = Path("/var/tmp/rdrill-bench-provision")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)
    figures: dict[str, object] = {}
    with Hypervisor(os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system")) as hv:
        for size in ("1G", "50G"):
            backup = WORK / f"backup-{size}.raw"
            subprocess.run(["truncate", "-s", size, str(backup)], check=True)
            backup.chmod(0o644)
            image = qemu_img.info(backup, "raw")
            times = []
            for _ in range(RUNS):
                lab = Lab(hv, "bench-provision")
                disks = [VmDisk("main", backup, image, 1024, 2)]
                seconds, _ = timed(lambda: lab.provision(disks, "qemu"))
                times.append(seconds)
                lab.teardown()
            figures[f"provision_{size}_s"] = round(median(times), 3)
            backup.unlink()
    # The full-copy alternative: copy the backup before booting it. Measured on 1 GiB of real
    # (random) data; 50 GB would need 50 GB of free disk, so it is extrapolated from that
    # throughput (and labelled so).
    data, copy = WORK / "data-1G.bin", WORK / "copy.bin"
    with data.open("wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(1 << 24))
    os.sync()

    def full_copy() -> None:
        shutil.copyfile(data, copy)
        os.sync()

    seconds, _ = timed(full_copy)
    figures["full_copy_1G_s"] = round(seconds, 2)
    figures["full_copy_50G_s_extrapolated"] = round(seconds * 50, 1)
    a, b = figures["provision_1G_s"], figures["provision_50G_s"]
    assert isinstance(a, float) and isinstance(b, float)
    figures["difference_pct"] = round(abs(b - a) / a * 100, 1)
    figures["target"] = "< 1 s both, within 10%"
    save("provision", figures)
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
