"""The bad-input corpus: every malformed scenario gives exit 2, a located message, no
traceback. Each file's first line says what the message must contain."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BAD = Path(__file__).parents[1] / "data" / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_scenario_is_refused_clearly(case: Path, scenario_dir: Path) -> None:
    expect = case.read_text().splitlines()[0].removeprefix("# expect: ")
    target = scenario_dir / case.name
    shutil.copy(case, target)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(target)],
        capture_output=True, text=True, check=False, timeout=10,  # a YAML bomb spun for minutes
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expect in proc.stderr, proc.stderr
    assert f"{target}" in proc.stderr  # names the file
