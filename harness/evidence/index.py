"""``reports/index.html``: the history an auditor or manager reads first.

Built from the ledger alone (one line per run), so it stays fast with thousands of runs:
latest verdict per scenario, pass rate, days since the last verified restore (over a
threshold: a coverage gap), RTO measured against target over time, and a link to every run.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from harness.evidence import ledger
from harness.evidence.templating import PAGES

INDEX = "index.html"
DEFAULT_GAP_DAYS = 30


@dataclass
class ScenarioHistory:
    """One scenario's runs, newest last."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latest(self) -> dict[str, Any]:
        return self.runs[-1]

    @property
    def pass_rate(self) -> float:
        return float(sum(r["verdict"] == "PASS" for r in self.runs)) / len(self.runs)

    @property
    def last_verified(self) -> dict[str, Any] | None:
        return next((r for r in reversed(self.runs) if r["verdict"] == "PASS"), None)


def _days_since(when: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(when)).total_seconds() / 86400


def _rto_chart(histories: list[ScenarioHistory]) -> Markup:
    import pygal  # lazily: it installs an import hook of its own (see docs/development.md)

    chart = pygal.DateTimeLine(
        js=[], disable_xml_declaration=True, width=900, height=320, x_label_rotation=20,
        legend_at_bottom=True, show_dots=True, dots_size=2, y_title="seconds",
        x_value_formatter=lambda d: d.strftime("%Y-%m-%d"), truncate_legend=40,
    )  # fmt: skip
    for history in histories:
        points = [
            (datetime.fromisoformat(r["time"]), r["rto_measured_s"])
            for r in history.runs
            if r["rto_measured_s"] is not None
        ]
        targets = [(datetime.fromisoformat(r["time"]), r["rto_target_s"]) for r in history.runs]
        if points:
            chart.add(f"{history.name} measured", points)
            chart.add(f"{history.name} RTO target", targets, stroke_style={"dasharray": "4,3"})
    ET.register_namespace("", "http://www.w3.org/2000/svg")  # inline SVG: no ns0: prefixes
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    # B314: pygal output
    root = ET.fromstring(chart.render(is_unicode=True))  # nosec B314
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag.endswith("script"):  # the page runs no script (its CSP forbids it)
                parent.remove(child)
    # S704/B704: built by pygal, escaped by ElementTree
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704  # nosec B704


def build_index(reports: Path, gap_days: float = DEFAULT_GAP_DAYS) -> Path:
    """Write ``reports/index.html`` atomically; its path."""
    now = datetime.now(UTC)
    entries = ledger.entries(reports)
    pruned = ledger.pruned_runs(entries)
    runs = ledger.runs(entries)
    by_scenario: dict[str, ScenarioHistory] = {}
    for run in runs:
        run["pruned"] = run["run_id"] in pruned
        by_scenario.setdefault(run["scenario"], ScenarioHistory(run["scenario"])).runs.append(run)
    histories = sorted(by_scenario.values(), key=lambda h: h.name)
    rows = []
    for h in histories:
        verified = h.last_verified
        days = _days_since(verified["time"], now) if verified else None
        rows.append({
            "history": h, "verified": verified, "days": days,
            "gap": days is None or days > gap_days,
        })  # fmt: skip
    html = PAGES.get_template("index.html.j2").render(
        rows=rows, runs=list(reversed(runs)), chart=_rto_chart(histories) if runs else "",
        generated=now.replace(microsecond=0).isoformat(), gap_days=gap_days,
        total=len(runs), passed=sum(r["verdict"] == "PASS" for r in runs),
    )  # fmt: skip
    target = reports / INDEX
    tmp = reports / f".{INDEX}.{os.getpid()}"
    tmp.write_text(html)
    tmp.replace(target)
    return target
