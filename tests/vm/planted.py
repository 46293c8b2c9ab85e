"""A backup with files planted in it, for the scan's tests: a qcow2 overlay of a demo image
whose root file system gets the test's files (qemu-storage-daemon's writable FUSE export and
a loop mount, in a mount namespace of its own; about a second, no appliance). The demo image
itself is only read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def planted(backing: Path, out: Path, files: dict[str, bytes]) -> Path:
    """``out``: an overlay of ``backing`` holding ``files`` (path in the system → content)."""
    out.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F",
                    "qcow2", str(out)], check=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rdrill-plant-") as work:
        for i, (path, content) in enumerate(files.items()):
            (Path(work) / f"f{i}").write_bytes(content)
            (Path(work) / f"f{i}.path").write_text(path)
        cmd = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
               "tests.vm.planted", str(out), work]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=120)
    out.chmod(0o644)
    return out


def _write(image: Path, work: Path) -> None:
    """In the namespace: export the overlay writable, mount its first partition, write."""
    export, mnt = work / "export", work / "mnt"
    export.touch()
    mnt.mkdir()
    file = {"driver": "file", "filename": str(image)}
    node = {"driver": "qcow2", "node-name": "d", "file": file}
    fuse = {"type": "fuse", "id": "e", "node-name": "d", "mountpoint": str(export),
            "writable": True}  # fmt: skip
    daemon = subprocess.Popen(["qemu-storage-daemon", "--blockdev", json.dumps(node),
                               "--export", json.dumps(fuse)])  # fmt: skip
    try:
        while f" {export} " not in Path("/proc/self/mountinfo").read_text():
            time.sleep(0.05)
        listed = subprocess.run(["sfdisk", "--json", str(export)], check=True,
                                capture_output=True).stdout  # fmt: skip
        table = json.loads(listed)["partitiontable"]
        first = table["partitions"][0]
        offset = int(first["start"]) * int(table.get("sectorsize", 512))
        subprocess.run(["mount", "-o", f"loop,offset={offset}", str(export), str(mnt)], check=True)
        try:
            for source in sorted(work.glob("f*.path")):
                target = mnt / source.read_text().lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.with_suffix(""), target)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    _write(Path(sys.argv[1]), Path(sys.argv[2]))
