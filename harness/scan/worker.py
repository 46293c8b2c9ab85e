"""The scan worker: ``unshare --mount --propagation private -- python -m harness.scan.worker
REQUEST.json`` (a file-level restore point's tar stream on standard input). It makes the
read-only view of the restore point (:mod:`.view`) in its own mount namespace, scans it
(:func:`harness.scan.scan_tree`), prints one JSON object, and undoes the view. It dies with
its parent; the mounts die with its namespace.

The answer: ``{"report": {...}}`` (:class:`harness.scan.ScanReport` as a dict, with the view's
``mounted`` and ``not_scanned``), or ``{"error": KIND, "phase": ..., "message": ...}``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.errors import DrillError, InfraError, PhaseFailed, PhaseTimeout
from harness.scan import Engine, ScanSpec, scan_tree
from harness.scan.view import die_with_parent, image_view, tree_view


def engines(request: dict[str, Any]) -> list[Engine]:
    """The engines a scan request names, each ready (its signatures loaded or compiled)."""
    found: list[Engine] = []
    if request.get("clamav"):
        from harness.scan.clamav import ClamAV

        found.append(ClamAV(Path(request["clamav"]), int(request["max_file_size"])))
    if request.get("yara"):
        from harness.scan.yara_rules import Yara

        found.append(Yara([Path(p) for p in request["yara"]]))
    return found


def scan(request: dict[str, Any]) -> dict[str, Any]:
    spec = ScanSpec(paths=tuple(request["paths"]), max_file_size=int(request["max_file_size"]),
                    timeout_s=float(request["timeout_s"]))  # fmt: skip
    deadline = time.monotonic() + spec.timeout_s
    folder = Path(request["folder"])
    ready = engines(request)
    disks = [(str(path), str(fmt)) for path, fmt in request.get("disks", [])]
    shown = image_view(disks, folder, deadline) if disks else \
        tree_view(sys.stdin.buffer, folder, deadline)  # fmt: skip
    with shown as view:
        report = scan_tree(view.root, spec, ready, deadline)
        return {**asdict(report), "mounted": view.mounted, "not_scanned": view.not_scanned}


def main() -> int:
    die_with_parent(int(sys.argv[2]) if len(sys.argv) > 2 else None)
    try:
        request = json.loads(Path(sys.argv[1]).read_text())
        answer: dict[str, Any] = {"report": scan(request)}
    except PhaseTimeout as exc:
        answer = {"error": "timeout", "phase": exc.phase, "message": str(exc)}
    except PhaseFailed as exc:
        answer = {"error": "failed", "phase": exc.phase, "message": str(exc)}
    except InfraError as exc:
        answer = {"error": "infra", "message": str(exc)}
    except DrillError as exc:
        answer = {"error": "config", "message": str(exc)}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
