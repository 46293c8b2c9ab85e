"""What the lab VM's video device (for the report's screenshots) costs in boot time: the demo
web backup booted with restore-drill's own domain XML, with and without the VGA adapter,
alternately, from `create` to the SSH port answering; and how long one screenshot takes.
Target: the adapter adds under 3% to the boot.

Usage (root, where the labs run):
    nsenter --net=/run/netns/restore-drill .venv/bin/python benchmarks/screen.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEMO, median, save, timed
from harness import qemu_img
from harness.lab.host import give_to_qemu
from harness.lab.hypervisor import Hypervisor
from harness.lab.xml import DomainPlan, NetworkPlan, domain_xml, network_xml

URI = os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system")
MODEL = os.environ.get("VIDEO_MODEL", "vga")  # to compare QEMU's video models


def boot(hv: Hypervisor, plan: DomainPlan) -> tuple[float, float]:
    """Seconds from `create` to port 22 answering, and one screenshot's seconds (0 without
    a video device)."""
    started = time.perf_counter()
    hv.create_domain(domain_xml(plan))
    try:
        ip = hv.wait_for_lease(plan.name, plan.mac, 600, lambda: None)
        while True:
            try:
                socket.create_connection((ip, 22), timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        booted = time.perf_counter() - started
        shot = timed(lambda: hv.screenshot(plan.name))[0] if plan.video else 0.0
        return booted, shot
    finally:
        hv.destroy_domain(plan.name)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    backup = DEMO / "web.qcow2"
    work = Path(tempfile.mkdtemp(prefix="rdrill-bench-screen-", dir="/var/tmp"))
    work.chmod(0o755)
    net = NetworkPlan(name="rdbench-screen", bridge="rdbenchscr", subnet=251)  # a MAC per boot:
    # a new boot must not be taken for the last one by its lease
    times: dict[bool, list[float]] = {True: [], False: []}  # by "with video"
    shots: list[float] = []
    with Hypervisor(URI) as hv:
        hv.create_network(network_xml(net))
        try:
            for i in range(runs * 2):
                video = MODEL if i % 2 == 0 else ""
                overlay = work / f"overlay-{i}.qcow2"
                qemu_img.create_overlay(overlay, backup, qemu_img.info(backup, "qcow2"))
                give_to_qemu(overlay, URI)
                plan = DomainPlan(
                    name="rdbench-screen-vm", lab_id="benchscreen", scenario="bench",
                    domain_type="qemu", memory_mib=1024, vcpus=2, overlay=overlay,
                    backing=(qemu_img.Layer(backup, "qcow2"),), network=net.name,
                    mac=f"52:54:00:be:5c:{i:02x}", console_log=work / f"console-{i}.log",
                )  # fmt: skip
                booted, shot = boot(hv, replace(plan, video=video))
                times[bool(video)].append(booted)
                if video:
                    shots.append(shot)
                taken = f", screenshot {shot * 1000:.0f} ms" if video else ""
                print(f"run {i + 1}: video={video} boot {booted:.2f}s{taken}", flush=True)
                overlay.unlink()
        finally:
            hv.destroy_network(net.name)
            shutil.rmtree(work, ignore_errors=True)
    with_video, without = median(times[True]), median(times[False])
    save("screen", {
        "runs_each": runs,
        "video_model": MODEL,
        "boot_with_video_s_median": round(with_video, 2),
        "boot_without_video_s_median": round(without, 2),
        "boot_with_video_s_range": [round(min(times[True]), 2), round(max(times[True]), 2)],
        "boot_without_video_s_range": [round(min(times[False]), 2), round(max(times[False]), 2)],
        "video_cost_percent": round(100 * (with_video - without) / without, 1),
        "screenshot_ms_median": round(1000 * median(shots), 1),
        "target_percent": 3,
    })  # fmt: skip


if __name__ == "__main__":
    main()
