"""``report.html``: one self-contained, autoescaped page for an auditor; verdict first."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.durations import format_duration
from harness.evidence.controls import CONTROLS

_ENV = Environment(
    loader=PackageLoader("harness.evidence", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["duration"] = lambda s: "—" if s is None else format_duration(float(s))

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


def render_html(data: dict[str, Any]) -> str:
    """The report page for ``data`` (the redacted report.json tree)."""
    return _ENV.get_template("report.html.j2").render(
        r=data, timeline=_timeline(data["phases"]), controls=CONTROLS
    )
