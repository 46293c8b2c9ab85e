"""The benchmark results table, regenerated from benchmarks/results/*.json (what each
benchmark script wrote last) into README.md ("Speed") between its markers: one row per
benchmark with when and where it ran, and every figure it recorded as it recorded it.

Usage: .venv/bin/python benchmarks/table.py          # rewrite the table
       .venv/bin/python benchmarks/table.py --check  # exit 1 if the table is not current
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, ROOT

DOC = ROOT / "README.md"
BEGIN = "<!-- benchmark-results:begin (benchmarks/table.py writes this table) -->"
END = "<!-- benchmark-results:end -->"


def shown(value: Any) -> str:
    """A figure as text: a two-number list is a range (min-max), a dict its items."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list, dict)):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return f"{shown(value[0])}\u2013{shown(value[1])}"  # an en dash
        return ", ".join(shown(v) for v in value)
    return ", ".join(f"{k} {shown(v)}" for k, v in value.items())


def row(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    where = f"{machine['cpu']}, {machine['cores']} cores, {machine['mem_kib'] // 1048576} GiB"
    figures = "; ".join(f"`{key}` {shown(value)}" for key, value in doc["figures"].items())
    cells = [f"`{doc['benchmark']}`", doc["when"].replace("+00:00", "Z"), where, figures]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def table() -> str:
    docs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = ["| benchmark | run (UTC) | machine | figures as recorded |", "|---|---|---|---|"]
    return "\n".join([*lines, *(row(d) for d in docs)])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args()
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest or END not in rest:
        print(f"{DOC}: the markers are missing", file=sys.stderr)
        return 2
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if args.check:
        current = new == text
        print("the table is current" if current else "the table is out of date", file=sys.stderr)
        return 0 if current else 1
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
