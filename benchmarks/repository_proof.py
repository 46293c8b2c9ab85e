"""The proof that a repository is unchanged, for a restic-shaped repository of 10,000 files
(9,980 pack files of 512 KiB under data/, 20 index/snapshot/key files): the identity before,
the first proof, and the proof after (target: under 2 s, not hashing 5 GB of packs)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import median, save, timed
from harness.evidence.model import BackupEvidence
from harness.sources.identity import confirm_unchanged, hash_backup, identity

FILES, PACKS, PACK_BYTES, RUNS = 10_000, 9_980, 512 * 1024, 5


def build(root: Path) -> None:
    if (root / "done").exists():
        return
    chunk = os.urandom(PACK_BYTES)
    for i in range(PACKS):
        folder = root / "data" / f"{i % 256:02x}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:064x}").write_bytes(chunk[i % 97:] + chunk[: i % 97])
    for sub in ("index", "snapshots", "keys"):
        (root / sub).mkdir(exist_ok=True)
    for i in range(FILES - PACKS - 1):
        (root / ("index", "snapshots", "keys")[i % 3] / f"{i:064x}").write_bytes(os.urandom(4096))
    (root / "config").write_bytes(os.urandom(256))
    (root / "done").write_text("")


def main() -> None:
    root = Path("/var/tmp/rdrill-bench-repository")
    build(root)
    runs = []
    for _ in range(RUNS):
        def proof() -> tuple[int, int]:
            evidence = BackupEvidence(kind="restic", path=str(root), identity_before=identity(root))
            counts = hash_backup(evidence, root, threading.Event(), ("data/",))
            confirm_unchanged(evidence, root, "hash", by_stat=("data/",))
            assert evidence.unchanged is True
            return counts

        took, (hashed, stated) = timed(proof)
        runs.append(took)
    full, _ = timed(lambda: hash_backup(BackupEvidence(kind="restic", path=str(root)), root,
                                        threading.Event()))  # fmt: skip
    save("repository_proof", {
        "files": FILES + 1, "pack_files": PACKS, "bytes": PACKS * PACK_BYTES,
        "proof_before_and_after_s": round(median(runs), 3),
        "proof_min_s": round(min(runs), 3), "proof_max_s": round(max(runs), 3),
        "full_hash_once_s": round(full, 2), "target": "< 2 s",
        "hashed_files": hashed, "files_by_stat": stated,
    })  # fmt: skip


if __name__ == "__main__":
    main()
