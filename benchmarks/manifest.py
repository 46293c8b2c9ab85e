"""Proof of the data on this host (no VM):

* manifest throughput: `restore-drill manifest` on one hashing thread, and on its default
  threads, against `find | xargs sha256sum` (one core), on 1 GiB in 256 files and on
  100,000 files of 1 KiB (target: >= 0.80 of sha256sum's throughput on one core);
* restore stream hashing: a 1 GiB tar stream piped into `tar -x` as the restore pipes it into
  the guest, with and without the host's hashing of every file in it (target: <= 1.10).

Usage: .venv/bin/python benchmarks/manifest.py [--runs N]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import median, save, timed
from harness.data.manifest import Header, write
from harness.data.scan import scan
from harness.data.stream import StreamHasher, placement

WORK = Path("/var/tmp/rdrill-bench-manifest")
CHUNK = 256 * 1024


def trees() -> dict[str, Path]:
    big, small = WORK / "big", WORK / "small"
    if not (big / "done").exists():
        shutil.rmtree(big, ignore_errors=True)
        big.mkdir(parents=True)
        for i in range(256):
            (big / f"f{i:03d}.bin").write_bytes(os.urandom(4 << 20))
        (big / "done").write_text("")
    if not (small / "done").exists():
        shutil.rmtree(small, ignore_errors=True)
        for d in range(100):
            folder = small / f"d{d:02d}"
            folder.mkdir(parents=True)
            for i in range(1000):
                (folder / f"f{i:04d}").write_bytes(os.urandom(1024))
        (small / "done").write_text("")  # one more file: 100,001 in all
    return {"1 GiB in 256 files": big, "100,000 files of 1 KiB": small}


def manifest(root: Path, threads: int) -> int:
    out = io.BytesIO()
    files, _, _ = write(out, Header(str(root)), scan(str(root), threads=threads))
    return files


def sha256sum(root: Path) -> None:
    find = subprocess.Popen(["find", ".", "-type", "f", "-print0"], cwd=root,
                            stdout=subprocess.PIPE)  # fmt: skip
    subprocess.run(["xargs", "-0", "sha256sum"], cwd=root, stdin=find.stdout,
                   stdout=subprocess.DEVNULL, check=True)  # fmt: skip
    assert find.stdout is not None
    find.stdout.close()
    assert find.wait() == 0


def restore(source: Path, hashed: bool) -> None:
    """tar -c | (this loop) | tar -x, the loop feeding the hasher too when ``hashed``."""
    into = WORK / "restored"
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir()
    writer = subprocess.Popen(["tar", "-C", str(source), "-cf", "-", "."], stdout=subprocess.PIPE)
    reader = subprocess.Popen(["tar", "-x", "-C", str(into), "-f", "-"], stdin=subprocess.PIPE)
    assert writer.stdout is not None
    assert reader.stdin is not None
    hasher = StreamHasher(placement(0, ())) if hashed else None
    fd = writer.stdout.fileno()
    while chunk := os.read(fd, CHUNK):
        if hasher is not None:
            hasher.feed(chunk)
        reader.stdin.write(chunk)
    reader.stdin.close()
    writer.stdout.close()
    assert writer.wait() == 0
    assert reader.wait() == 0
    if hasher is not None:
        entries, problem = hasher.finish()
        assert not problem
        assert len(entries) == 257


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    figures: dict[str, object] = {}
    for label, root in trees().items():
        manifest(root, 0)  # from the page cache: this compares hashing, not the disk
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
        one = median([timed(lambda: manifest(root, 1))[0] for _ in range(runs)])
        many = median([timed(lambda: manifest(root, 0))[0] for _ in range(runs)])
        theirs = median([timed(lambda: sha256sum(root))[0] for _ in range(runs)])
        figures[label] = {
            "manifest_1_thread_mib_s": round(size / one, 1),
            "manifest_default_threads_mib_s": round(size / many, 1),
            "sha256sum_mib_s": round(size / theirs, 1),
            "ratio_1_thread": round(theirs / one, 3),
            "target": ">= 0.80 (one thread vs sha256sum)",
        }
    big = WORK / "big"
    plain = median([timed(lambda: restore(big, False))[0] for _ in range(runs)])
    hashed = median([timed(lambda: restore(big, True))[0] for _ in range(runs)])
    figures["restore stream, 1 GiB"] = {
        "without_hashing_s": round(plain, 2),
        "with_hashing_s": round(hashed, 2),
        "ratio": round(hashed / plain, 3),
        "target": "<= 1.10",
    }
    save("manifest", figures)


if __name__ == "__main__":
    main()
