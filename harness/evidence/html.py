"""``report.html``: one self-contained, autoescaped page for an auditor; verdict first."""

from __future__ import annotations

import base64
from typing import Any

from harness.evidence.controls import CONTROLS
from harness.evidence.templating import PAGES

TIMELINE_WIDTH = 720


def _timeline(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for an inline SVG timeline: x and width in pixels, one row per phase."""
    end = max((p["start_s"] + p["duration_s"] for p in phases), default=0.0) or 1.0
    scale = (TIMELINE_WIDTH - 160) / end
    bars = [
        {
            **p,
            "x": 150 + p["start_s"] * scale,
            "w": max(p["duration_s"] * scale, 2.0),
            "y": 8 + i * 24,
        }
        for i, p in enumerate(phases)
    ]
    return {"bars": bars, "height": 16 + 24 * len(phases), "width": TIMELINE_WIDTH}


def render_html(data: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The report page for ``data`` (the redacted report.json tree); ``images`` (the run's
    PNG files by name) are embedded as ``data:`` URIs: the page stays one file that loads
    nothing."""
    embedded = {name: "data:image/png;base64," + base64.b64encode(png).decode()
                for name, png in (images or {}).items()}  # fmt: skip
    return PAGES.get_template("report.html.j2").render(
        r=data, timeline=_timeline(data["phases"]), controls=CONTROLS, images=embedded
    )
