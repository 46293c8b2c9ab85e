"""The restore proves its own bytes: a tar stream (made by GNU tar, as the tools make them)
hashed as it passes, each file placed where the guest's ``tar -x`` puts it, then the
extracted files listed by the guest command (run here) and compared."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.data import tree
from harness.data.compare import compare
from harness.data.scan import scan
from harness.data.stream import StreamHasher, placement
from harness.evidence.model import DataProof
from tests.unit.test_manifest import make_tree


def stream(hasher: StreamHasher, argv: list[str], into: Path, extract: list[str]) -> None:
    """Run ``argv`` (a tar writer), feed its output to the hasher and to ``tar -x``."""
    into.mkdir(exist_ok=True)
    writer = subprocess.Popen(argv, stdout=subprocess.PIPE)
    reader = subprocess.Popen(["tar", "-x", "-C", str(into), "-f", "-", *extract],
                              stdin=subprocess.PIPE)  # fmt: skip
    assert writer.stdout is not None
    assert reader.stdin is not None
    while chunk := writer.stdout.read(7919):  # odd-sized chunks: headers split across them
        hasher.feed(chunk)
        reader.stdin.write(chunk)
    reader.stdin.close()
    writer.stdout.close()
    assert writer.wait() == 0
    assert reader.wait() == 0


def listed(root: Path, entries: list) -> dict[bytes, tree.Found]:  # type: ignore[type-arg]
    names = b"".join(b"./" + e.path + b"\0" for e in entries)
    done = subprocess.run(["sh", "-c", tree.files_command(str(root))], input=names,
                          capture_output=True, check=True)  # fmt: skip
    return tree.parse(done.stdout)


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
def test_a_stream_of_a_server_folder_is_hashed_and_placed_like_tar_places_it(
    tmp_path: Path, fmt: str
) -> None:
    server = tmp_path / "server"
    site = server / "var" / "www" / "html"
    make_tree(site)
    if fmt != "ustar":
        deep = site / ("long-" * 30) / "name-beyond-100-characters.html"
        deep.parent.mkdir()
        deep.write_text("a long name needs a GNU or pax header")
    hasher = StreamHasher(placement(3, ()))  # a subpath of /var/www/html: 3 folders cut
    stream(hasher, ["tar", f"--format={fmt}", "-C", str(server), "-cf", "-", "var/www/html"],
           tmp_path / "guest", ["--strip-components=3"])  # fmt: skip
    entries, problem = hasher.finish()
    assert problem == ""
    on_server = {e.path: e for e in scan(str(site))}
    assert {e.path for e in entries} == set(on_server)  # every file; no symlink
    for entry in entries:  # the same bytes and attributes as the files on the server
        there = on_server[entry.path]
        assert (entry.sha256, entry.size, entry.mode, entry.uid) == (
            there.sha256, there.size, there.mode, there.uid), entry.path
    hard = next(e for e in entries if e.path == b"hard-link")
    assert hard.sha256 == next(e for e in entries if e.path == b"plain.txt").sha256
    proof = compare(DataProof("main", "restore stream", "/", "stream"), entries,
                    listed(tmp_path / "guest", entries))  # fmt: skip
    assert proof.passed, (proof.missing, proof.changed)
    assert proof.files_matching == len(entries)


def test_a_silent_partial_restore_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "src"
    make_tree(source)
    hasher = StreamHasher(placement(0, ()))
    stream(hasher, ["tar", "-C", str(source), "-cf", "-", "."], tmp_path / "guest", [])
    entries, _ = hasher.finish()
    guest = tmp_path / "guest"
    (guest / "with space").write_bytes(b"truncated")  # as a full disk would leave it
    os.unlink(guest / "sub" / "deeper" / "file")  # as a member tar skipped
    proof = compare(DataProof("main", "restore stream", "/", "stream"), entries,
                    listed(guest, entries))  # fmt: skip
    assert not proof.passed
    assert proof.missing == ["sub/deeper/file"]
    assert [c["path"] for c in proof.changed] == ["with space"]


def test_only_the_members_the_guest_takes_are_expected(tmp_path: Path) -> None:
    place = placement(4, ("./var/www/html",))
    assert place("./var/www/html/index.html") == "index.html"
    assert place("./var/www/html") is None
    assert place("./srv/mail/README") is None
    assert place("./var/www/htmlother/x") is None
    assert placement(0, ())("./a/./b") == "a/b"
    assert placement(3, ())("/var/www/html/a") == "a"


def test_a_stream_that_is_not_tar_is_said_not_proven(tmp_path: Path) -> None:
    hasher = StreamHasher(placement(0, ()))
    for _ in range(200):  # more than the queue holds: the failed reader must not block
        hasher.feed(b"this is not a tar archive " * 1000)
    entries, problem = hasher.finish()
    assert entries == []
    assert problem.startswith("the stream could not be read as tar")


def test_a_restore_proof_not_made_is_a_skipped_check_named_with_its_machine() -> None:
    """With several machines each check names its machine; the check of a proof that could
    not be made did not (two machines' checks shared one name)."""
    from harness.drill.dataproof import stream_not_proven

    check = stream_not_proven("/var/www/html", "web", True, "the tar reader did not finish")
    assert check.name == "data: every file restored into /var/www/html is the backup's on web"
    assert (check.skipped, check.passed) == (True, False)
    assert check.observed == "not proven: the tar reader did not finish"
    single = stream_not_proven("/srv", "main", False, "x")
    assert single.name == "data: every file restored into /srv is the backup's"
