"""The report and the history page as a person sees them: real headless Chromium."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from harness.drill.screens import as_png
from harness.evidence.index import build_index
from harness.evidence.model import Screen
from harness.evidence.pdf import chromium_command, print_pdf
from harness.evidence.writer import write_evidence
from tests.unit.test_evidence import result

pytestmark = pytest.mark.browser

# a screen of one colour no report otherwise uses: found in the page's rendering, it was drawn
SCREEN_RGB = (255, 0, 255)
SCREEN = as_png("", b"P6\n320 200\n255\n" + bytes(SCREEN_RGB) * 320 * 200)
HOSTILE_OUTPUT = (
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned2'\">"
)


def chromium(*args: str, tmp: Path, proxy: int | None = None) -> str:
    extra = (
        [f"--proxy-server=http://127.0.0.1:{proxy}", "--proxy-bypass-list=<-loopback>"]
        if proxy
        else []
    )
    proc = subprocess.run(
        chromium_command(*extra, "--virtual-time-budget=3000", *args, profile=str(tmp / "profile")),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    folder = tmp_path / "reports"
    for i, verdict in enumerate(["PASS", "FAIL", "PASS"]):
        run = replace(result(verdict), started_at=f"2026-11-{10 + i:02d}T02:00:00+00:00")
        run.checks[0] = replace(run.checks[0], output=HOSTILE_OUTPUT)
        run.description = HOSTILE_OUTPUT
        run.screens = [Screen("", "end of boot", "screen-boot.png", 320, 200,
                              hashlib.sha256(SCREEN).hexdigest(), run.started_at)]
        write_evidence(run, "s: 1\n", b"log\n", folder, [], images={"screen-boot.png": SCREEN})
    other = replace(result("FAIL"), scenario="db-nightly", started_at="2026-11-20T02:00:00+00:00")
    write_evidence(other, "s: 1\n", b"log\n", folder, [])
    build_index(folder, gap_days=7)
    return folder


@pytest.fixture
def proxy() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback 'proxy' that records every connection Chromium makes and answers 502."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    seen.append(conn.recv(4096))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], seen
    server.close()


def run_folder(reports: Path) -> Path:
    return sorted(p for p in reports.iterdir() if p.is_dir() and p.name.endswith("unit-web"))[0]


def test_report_renders_with_verdict_targets_and_checks(reports: Path, tmp_path: Path) -> None:
    page = run_folder(reports) / "report.html"
    dom = chromium("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert 'class="banner PASS"' in dom
    assert "RTO (recovery time)" in dom
    assert "Controls this evidence supports" in dom
    assert "ISO/IEC 27001:2022, Annex A 8.13" in dom
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,2400", f"--screenshot={shot}", page.as_uri(), tmp=tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a real page, not a blank


def test_the_screenshot_is_drawn_in_the_report(reports: Path, tmp_path: Path) -> None:
    page = run_folder(reports) / "report.html"
    dom = chromium("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert 'alt="The screen of the VM (end of boot)"' in dom
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,6000", f"--screenshot={shot}", page.as_uri(), tmp=tmp_path)
    colours = {rgb: n for n, rgb in Image.open(shot).convert("RGB").getcolors(1 << 24)}
    assert colours.get(SCREEN_RGB, 0) > 0.9 * 320 * 200


def test_hostile_text_is_shown_as_text(reports: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", (run_folder(reports) / "report.html").as_uri(), tmp=tmp_path)
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]
    assert "<script>document.title" not in dom  # no such element was created
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # shown as text


def test_report_and_index_make_no_network_request(
    reports: Path, tmp_path: Path, proxy: tuple[int, list[bytes]]
) -> None:
    port, seen = proxy
    # The method can see a request: a page that makes one is caught.
    control = tmp_path / "control.html"
    control.write_text('<img src="http://restore-drill.invalid/pixel.png">')
    chromium("--dump-dom", control.as_uri(), tmp=tmp_path, proxy=port)
    assert seen, "the counting proxy saw nothing: the test could not detect a request"
    seen.clear()
    for page in (reports / "index.html", run_folder(reports) / "report.html"):
        chromium("--dump-dom", page.as_uri(), tmp=tmp_path, proxy=port)
    assert [r for r in seen if not _chromium_service(r)] == []


def _chromium_service(request: bytes) -> bool:
    """Chromium's own background traffic (not the page's): Google service hosts only."""
    target = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
    host = target.split(b"//", 1)[-1].split(b"/", 1)[0].split(b":", 1)[0]
    return host.endswith((b".google.com", b".googleapis.com", b".gstatic.com"))


def test_index_shows_history_gaps_chart_and_links(reports: Path, tmp_path: Path) -> None:
    index = reports / "index.html"
    dom = chromium("--dump-dom", index.as_uri(), tmp=tmp_path)
    assert "Restore drill history" in dom
    assert "unit-web" in dom
    assert "db-nightly" in dom
    assert "never" in dom  # db-nightly has no verified restore
    assert dom.count("coverage gap") == 2  # unit-web's last PASS is 11+ days old; db never
    assert "67% of 3" in dom
    assert "<svg" in dom
    assert "measured" in dom
    for run in (p for p in reports.iterdir() if p.is_dir() and p.name != "keys"):
        assert f'href="{run.name}/report.html"' in dom
    shot = tmp_path / "index.png"
    chromium("--window-size=1200,1600", f"--screenshot={shot}", index.as_uri(), tmp=tmp_path)
    assert shot.stat().st_size > 20_000


def test_pdf(reports: Path, tmp_path: Path) -> None:
    pdf = print_pdf(run_folder(reports), tmp_path / "r.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(data) > 10_000
