"""Start-up and validation: ``restore-drill --help`` (target < 150 ms; it must not import
libvirt, paramiko or testinfra) and ``validate`` of 500 scenarios (target < 2 s): the demo
web scenario under 500 names, in one folder. Medians of 5 runs each.

Usage: .venv/bin/python benchmarks/startup.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import ROOT, median, save, timed

CLI = [sys.executable, "-m", "harness"]


def run(*args: str) -> float:
    seconds, proc = timed(lambda: subprocess.run([*CLI, *args], capture_output=True,
                                                 text=True, cwd=ROOT, check=False))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return seconds


def main() -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, harness.cli; print(' '.join(sorted(m for m in "
         "('libvirt', 'paramiko', 'testinfra', 'jsonschema', 'jinja2') if m in sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    helps = [run("--help") for _ in range(5)]
    folder = Path(tempfile.mkdtemp(prefix="rdrill-bench-validate-"))
    try:
        text = (ROOT / "scenarios" / "demo-web.yaml").read_text()
        for i in range(500):
            name = f'default("web-{i}")'
            (folder / f"web-{i}.yaml").write_text(text.replace('default("demo-web")', name))
        shutil.copytree(ROOT / "scenarios" / "tests", folder / "tests")
        validates = [run("validate", str(folder)) for _ in range(5)]
    finally:
        shutil.rmtree(folder)
    save("startup", {
        "help_s": round(median(helps), 3),
        "help_range_s": [round(min(helps), 3), round(max(helps), 3)],
        "help_imports_of_libvirt_paramiko_testinfra_jsonschema_jinja2": imported or "none",
        "validate_500_s": round(median(validates), 2),
        "validate_500_range_s": [round(min(validates), 2), round(max(validates), 2)],
        "targets": "--help < 0.150 s; validate of 500 < 2 s",
    })  # fmt: skip


if __name__ == "__main__":
    main()
