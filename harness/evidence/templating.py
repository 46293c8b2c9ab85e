"""The one Jinja2 environment for evidence pages: autoescaped, strict, with a duration filter."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.durations import format_duration

PAGES = Environment(
    loader=PackageLoader("harness.evidence", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
PAGES.filters["duration"] = lambda s: "—" if s is None else format_duration(float(s))
