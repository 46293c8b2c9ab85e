"""Backup hashing throughput: harness vs sha256sum on the same 1 GiB file (target >= 90%)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import median, save, timed
from harness.sources.identity import sha256_file

SIZE = 1 << 30
RUNS = 5


def main() -> None:
    path = Path("/var/tmp/rdrill-bench-1g.bin")
    if not path.exists() or path.stat().st_size != SIZE:
        with path.open("wb") as fh:
            for _ in range(SIZE // (1 << 24)):
                fh.write(os.urandom(1 << 24))
    # Warm the page cache once so both read from memory: this compares hashing, not the disk.
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    ours, theirs = [], []
    for _ in range(RUNS):
        t, digest = timed(lambda: sha256_file(path))
        ours.append(t)
        t, out = timed(
            lambda: (
                subprocess.run(
                    ["sha256sum", str(path)], capture_output=True, text=True, check=True
                ).stdout
            )
        )
        theirs.append(t)
        assert out.split()[0] == digest
    mib = SIZE / (1 << 20)
    save(
        "hashing",
        {
            "file_mib": mib,
            "harness_mib_s": round(mib / median(ours), 1),
            "sha256sum_mib_s": round(mib / median(theirs), 1),
            "ratio": round(median(theirs) / median(ours), 3),
            "target": ">= 0.90",
        },
    )


if __name__ == "__main__":
    main()
