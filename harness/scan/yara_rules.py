"""YARA rules the user keeps (``scan.yara.rules``), compiled once by yara-python and matched
against each file, each match bounded by what is left of the scan's deadline."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yara

from harness.errors import ConfigError, PhaseTimeout
from harness.scan import PHASE


class Yara:
    name = "yara"

    def __init__(self, rules: Sequence[Path]) -> None:
        self.paths = list(rules)
        try:
            self.rules = yara.compile(filepaths={f"r{i}": str(p) for i, p in enumerate(rules)})
        except yara.Error as exc:
            raise ConfigError(f"YARA rules do not compile: {exc}") from None

    def provenance(self) -> dict[str, Any]:
        return {"engine": "yara", "version": yara.__version__,
                "rules": [{"file": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                          for p in self.paths],
                "rule_count": sum(1 for _ in self.rules)}  # fmt: skip

    def scan(self, files: Sequence[Path], deadline: float) -> tuple[dict[Path, list[str]],
                                                                     dict[Path, str]]:  # fmt: skip
        matched: dict[Path, list[str]] = {}
        unreadable: dict[Path, str] = {}
        for path in files:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(PHASE, "YARA did not finish within the scan's timeout")
            try:
                found = self.rules.match(str(path), timeout=max(int(left), 1))
            except yara.TimeoutError as exc:
                raise PhaseTimeout(PHASE, f"YARA did not finish {path} within the scan's "
                                          "timeout") from exc  # fmt: skip
            except yara.Error:
                unreadable[path] = "unreadable"
                continue
            if found:
                matched[path] = [m.rule for m in found]
        return matched, unreadable
