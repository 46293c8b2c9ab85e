"""The layers of the code, checked in a fresh interpreter: loading a scenario never imports
the code that opens a backup, and notifying never imports the drill's heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("libvirt", "paramiko", "testinfra")


def _imported(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    return set(out.split())


@pytest.mark.parametrize("module", ["harness.scenario.loader", "harness.scenario.schema"])
def test_the_scenario_package_does_not_import_the_sources(module: str) -> None:
    loaded = _imported(module)
    assert not {m for m in loaded if m == "harness.sources" or m.startswith("harness.sources.")}
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("module", ["harness.notify", "harness.notify.summary",
                                    "harness.notify.metrics"])  # fmt: skip
def test_notify_imports_neither_libvirt_nor_paramiko_nor_testinfra(module: str) -> None:
    loaded = _imported(module)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "harness.drill" not in loaded
