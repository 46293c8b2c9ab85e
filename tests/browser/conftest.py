"""Unit tests keep lab state in their own folder, never in the host's real state root."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTORE_DRILL_STATE_DIR", str(tmp_path / "state"))
