"""Screenshots of lab VMs: libvirt's image as PNG, in the run folder, its manifest and page."""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from harness.drill import DrillOptions, screens
from harness.drill.context import Drill
from harness.drill.pipeline import open_drill
from harness.evidence.writer import write_evidence
from harness.interrupts import Interrupts
from harness.lab.hypervisor import Hypervisor
from harness.output.events import Event
from harness.scenario.loader import load_scenario
from tests.unit.test_evidence import result
from tests.unit.test_machine_start import APP


def test_libvirt_screenshot_is_png_with_its_size() -> None:
    hv = Hypervisor("test:///default")
    mime, data = hv.screenshot("test")
    png = screens.as_png(mime, data)
    assert png == data  # PNG as it came
    assert screens.png_size(png) == Image.open(io.BytesIO(png)).size


def test_a_ppm_screenshot_is_encoded_as_png_pixel_for_pixel() -> None:
    pixels = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90])
    ppm = b"P6\n3 2\n255\n" + pixels
    png = screens.as_png("image/x-portable-pixmap", ppm)
    image = Image.open(io.BytesIO(png))
    assert image.size == (3, 2) == screens.png_size(png)
    assert image.convert("RGB").tobytes() == pixels


@pytest.mark.parametrize(
    "data", [b"GIF89a....", b"P6\n3 2\n65535\n" + bytes(36), b"P6\n3 2\n255\n\0"]
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not PNG or PPM|not 8-bit RGB|truncated"):
        screens.as_png("image/gif", data)


def test_a_drill_keeps_the_screen_and_says_when_it_cannot(scenario_dir: Path) -> None:
    (scenario_dir / "app.yaml").write_text(APP)
    events: list[Event] = []
    d = Drill(load_scenario(scenario_dir / "app.yaml"), DrillOptions(uri="test:///default"),
              events.append, Interrupts())  # fmt: skip
    open_drill(d)
    d.hv = Hypervisor("test:///default")
    screens.take(d, "test", "db", "boot timed out")
    [shot] = d.result.screens
    assert (shot.machine, shot.when, shot.file) == ("db", "boot timed out", "screen-db-timeout.png")
    assert shot.sha256 == hashlib.sha256(d.outcome.images[shot.file]).hexdigest()
    screens.take(d, "no-such-vm", "", "end of boot")
    assert len(d.result.screens) == 1
    assert any("screenshot (end of boot) not taken" in e.message and "no-such-vm" in e.message
               for e in events)  # fmt: skip


def test_the_screen_is_in_the_folder_its_manifest_and_its_page(tmp_path: Path) -> None:
    png = screens.as_png("", b"P6\n2 1\n255\n" + bytes([255, 0, 255, 255, 0, 255]))
    run = result("FAIL")
    run.screens.append(
        screens.Screen(
            "",
            "boot timed out",
            "screen-timeout.png",
            2,
            1,
            hashlib.sha256(png).hexdigest(),
            "2026-11-23T02:16:00+00:00",
        )
    )
    folder = write_evidence(
        run, "s: 1\n", b"log\n", tmp_path, [], images={"screen-timeout.png": png}
    )
    assert (folder / "screen-timeout.png").read_bytes() == png
    manifest = (folder / "manifest.sha256").read_text()
    assert f"{hashlib.sha256(png).hexdigest()}  screen-timeout.png\n" in manifest
    page = (folder / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "boot timed out" in page
    assert (
        json.loads((folder / "report.json").read_text())["screens"][0]["file"]
        == "screen-timeout.png"
    )


def test_a_screen_taken_after_a_phase_is_not_dated_before_its_end(scenario_dir: Path) -> None:
    """The report dates the drill (``started_at``) and its screens (``taken_at``); its phases
    are offsets from the start. A screen taken after settle must not read as taken before
    settle ended: with times cut to the second it did whenever the phase ended in the same
    second as the screen was taken (found by a VM test that failed 1 run in 10)."""
    (scenario_dir / "app.yaml").write_text(APP)
    time.sleep(1.1 - time.time() % 1)  # start 0.1 s into a second: the cut loses 0.1 s
    d = Drill(load_scenario(scenario_dir / "app.yaml"), DrillOptions(uri="test:///default"),
              lambda _: None, Interrupts())  # fmt: skip
    open_drill(d)
    d.hv = Hypervisor("test:///default")
    with d.clock.phase("settle") as settle:
        time.sleep(0.3)
    screens.take(d, "test", "", "end of boot")
    [shot] = d.result.screens
    settled = datetime.fromisoformat(d.result.started_at) + timedelta(
        seconds=settle.start_s + settle.duration_s)  # fmt: skip
    assert datetime.fromisoformat(shot.taken_at) >= settled - timedelta(milliseconds=2)
    assert datetime.fromisoformat(shot.taken_at) - settled < timedelta(milliseconds=200)
