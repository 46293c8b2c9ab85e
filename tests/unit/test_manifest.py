"""Manifests: recorded by ``restore-drill manifest``, read by ``sha256sum -c`` as they are,
parsed back exactly (unusual names included), signed, and compared with a folder as the
guest command lists it (that command runs here, with the same sh, find and sha256sum)."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.data import tree
from harness.data.compare import compare, summary
from harness.data.manifest import Entry, Header, ManifestError, parse, write
from harness.data.scan import scan
from harness.evidence.model import DataProof
from harness.signing import generate, load_private, load_public

ODD_NAMES = [b"plain.txt", b"with space", b"new\nline", b"back\\slash", b"cr\rname",
             b"latin1-\xe9t\xe9", b"sub/deeper/file", b"-starts-with-dash"]  # fmt: skip


def make_tree(root: Path) -> None:
    for i, name in enumerate(ODD_NAMES):
        path = os.path.join(os.fsencode(root), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(b"content %d\n" % i * (i + 1))
    os.link(root / "plain.txt", root / "hard-link")
    (root / "symlink").symlink_to("plain.txt")
    (root / "dir-link").symlink_to("sub")
    os.chmod(root / "plain.txt", 0o640)
    (root / "cache").mkdir()
    (root / "cache" / "x").write_text("excluded")
    (root / "skip.tmp").write_text("excluded")


def manifest_bytes(root: Path, key: Path | None = None, **header: object) -> bytes:
    out = io.BytesIO()
    excludes = ("*.tmp", "cache")
    write(out, Header(str(root), "2026-12-02T10:00:00+00:00", "web1", excludes),
          scan(str(root), excludes), load_private(key) if key else None)  # fmt: skip
    return out.getvalue()


def guest_listing(root: Path, excludes: tuple[str, ...] = ("*.tmp", "cache")) -> dict[bytes,
                                                                                      tree.Found]:
    done = subprocess.run(["sh", "-c", tree.command(str(root))], capture_output=True, check=True)
    return tree.parse(done.stdout, excludes)


def test_round_trip_with_unusual_names_and_sha256sum_reads_it(tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_tree(root)
    data = manifest_bytes(root)
    manifest = parse(data)
    paths = [e.path for e in manifest.entries]
    assert paths == sorted([*ODD_NAMES, b"hard-link"])  # no symlink, nothing excluded
    assert manifest.header.root == str(root)
    assert manifest.header.excludes == ("*.tmp", "cache")
    plain = next(e for e in manifest.entries if e.path == b"plain.txt")
    assert plain.mode == 0o640
    assert plain.sha256 == next(e for e in manifest.entries if e.path == b"hard-link").sha256
    assert plain.mtime_ns == (root / "plain.txt").stat().st_mtime_ns
    # written again from the parsed entries: the same bytes
    again = io.BytesIO()
    write(again, manifest.header, manifest.entries)
    assert again.getvalue() == data
    # GNU sha256sum checks it as it is, every line (comments skipped, escapes understood)
    (tmp_path / "files.manifest").write_bytes(data)
    done = subprocess.run(["sha256sum", "-c", "--strict", str(tmp_path / "files.manifest")],
                          cwd=root, capture_output=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b": OK") == len(paths)


def test_the_guest_listing_of_an_identical_tree_matches(tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_tree(root)
    manifest = parse(manifest_bytes(root))
    found = guest_listing(root)
    assert set(found) == {e.path for e in manifest.entries}
    proof = compare(DataProof("main", "manifest", str(root), "m"), manifest.entries, found)
    assert proof.passed, proof
    assert (proof.files_expected, proof.files_found, proof.files_matching) == (9, 9, 9)
    assert proof.bytes_matching == proof.bytes_expected == manifest.total_bytes
    assert summary(proof).startswith("all 9 files identical (")


def test_changed_missing_and_added_files_are_each_named(tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_tree(root)
    manifest = parse(manifest_bytes(root))
    os.unlink(os.path.join(os.fsencode(root), b"new\nline"))
    (root / "with space").write_bytes(b"other content")
    os.chmod(root / "plain.txt", 0o600)
    os.utime(root / "sub" / "deeper" / "file", (0, 0))
    (root / "added.html").write_text("new")
    (root / "also.tmp").write_text("excluded: not unexpected")
    proof = compare(DataProof("main", "manifest", str(root), "m"), manifest.entries,
                    guest_listing(root))  # fmt: skip
    assert not proof.passed
    assert proof.missing == ["new\\nline"]
    changed = {c["path"]: c["what"] for c in proof.changed}
    assert [w.split(":")[0] for w in changed["with space"]] == ["content", "size"]
    assert changed["plain.txt"] == changed["hard-link"] == ["mode: 0640 → 0600"]  # one inode
    assert changed["sub/deeper/file"][0].startswith("mtime: ")
    assert proof.unexpected == ["added.html"]
    assert (proof.missing_count, proof.changed_count, proof.unexpected_count) == (1, 4, 1)
    assert proof.files_found == 8
    assert proof.files_matching == 4
    line = summary(proof)
    assert "1 missing (new\\nline)" in line
    assert "1 unexpected (added.html), allowed" in line
    # ignoring mode and mtime: only the content change and the missing file remain
    lenient = compare(DataProof("main", "manifest", str(root), "m"), manifest.entries,
                      guest_listing(root), ignore=("mode", "mtime"))  # fmt: skip
    assert lenient.changed_count == 1
    assert lenient.compared == ["content", "size", "owner"]
    strict = DataProof("main", "manifest", str(root), "m", strict=True)
    root_files = {k: v for k, v in guest_listing(root).items() if k != b"added.html"}
    assert not compare(strict, manifest.entries, {**root_files, b"x": root_files[b"hard-link"]}
                       ).passed  # fmt: skip


def test_owners_compare_by_name_where_both_sides_know_it() -> None:
    entry = Entry(b"f", "0" * 64, 1, 0o644, 33, 33, "www-data", "www-data", 0)
    same_name = tree.Found(1, 0o644, 1033, 1033, "www-data", "www-data", 0, "0" * 64)
    assert compare(DataProof("m", "manifest", "/", ""), [entry], {b"f": same_name}).passed
    nameless = tree.Found(1, 0o644, 1033, 33, "", "", 0, "0" * 64)
    proof = compare(DataProof("m", "manifest", "/", ""), [entry], {b"f": nameless})
    assert proof.changed == [{"path": "f", "what": ["owner: 33:33 → 1033:33"]}]
    unreadable = tree.Found(1, 0o644, 33, 33, "www-data", "www-data", 0, "")
    proof = compare(DataProof("m", "manifest", "/", ""), [entry], {b"f": unreadable})
    assert proof.changed[0]["what"] == ["content: unreadable in the guest"]


def test_a_missing_folder_and_the_lists_cut_at_a_thousand(tmp_path: Path) -> None:
    done = subprocess.run(["sh", "-c", tree.command(str(tmp_path / "absent"))], check=False)
    assert done.returncode == tree.NO_FOLDER
    entries = [Entry(b"f%06d" % i, "0" * 64, 1, 0o644, 0, 0, "", "", 0) for i in range(100_000)]
    found = {e.path: tree.Found(1, 0o644, 0, 0, "", "", 0, "0" * 64) for e in entries[:98_000]}
    proof = compare(DataProof("m", "manifest", "/", ""), entries, found)
    assert proof.missing_count == 2000
    assert len(proof.missing) == 1000
    assert proof.files_matching == 98_000


@pytest.mark.parametrize(("damage", "line", "said"), [
    (lambda d: d.replace(b"# end:", b"# fin:"), 0, "no end line"),
    (lambda d: d[: d.index(b"# end:")], 0, "no end line"),
    (lambda d: d[:-1], 0, "does not end with a newline"),
    (lambda d: d.replace(b"  plain.txt\n#= ", b"  plain.txt\n#x "), 0, "without its #="),
    (lambda d: d.replace(b"restore-drill manifest 1", b"something else"), 1, "not a restore"),
    (lambda d: re.sub(rb"size=(\d+) ", b"size=999 ", d, count=1), 0, "the end line says"),
])  # fmt: skip
def test_a_damaged_manifest_is_refused_naming_the_line(
    tmp_path: Path, damage: object, line: int, said: str
) -> None:
    root = tmp_path / "site"
    make_tree(root)
    data = damage(manifest_bytes(root))  # type: ignore[operator]
    with pytest.raises(ManifestError, match=said) as caught:
        parse(data)
    if line:
        assert caught.value.line == line


def test_signatures_catch_a_swapped_or_edited_manifest(tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_tree(root)
    generate(tmp_path / "ours.key")
    generate(tmp_path / "theirs.key")
    ours = load_public((tmp_path / "ours.key.pub").read_bytes(), "ours")
    signed = manifest_bytes(root, tmp_path / "ours.key")
    manifest = parse(signed)
    assert manifest.signer.startswith("ed25519:")
    assert manifest.check_signature(ours) is None
    assert parse(manifest_bytes(root)).check_signature(ours) == (
        "the manifest is not signed, and the scenario names a public key")
    swapped = parse(manifest_bytes(root, tmp_path / "theirs.key"))
    assert "not by the scenario's key" in str(swapped.check_signature(ours))
    first = manifest.entries[0].sha256
    edited = parse(signed.replace(first.encode(), b"f" * 64, 1))
    assert edited.check_signature(ours) == (
        "the manifest's signature does not match its content (changed after signing)")


def test_the_manifest_command_writes_atomically_and_signs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "site"
    make_tree(root)
    generate(tmp_path / "k")
    out = tmp_path / "files.manifest"
    main(["manifest", str(root), "--exclude", "*.tmp", "--exclude", "cache",
          "--as", "/var/www/html", "--sign", str(tmp_path / "k"), "-o", str(out)])
    manifest = parse(out.read_bytes())
    assert manifest.header.root == "/var/www/html"
    assert len(manifest.entries) == 9
    assert manifest.check_signature(load_public((tmp_path / "k.pub").read_bytes(), "k")) is None
    assert "manifest: 9 files" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    with pytest.raises(SystemExit) as done:
        main(["manifest", str(root), "--as", "relative/path"])
    assert done.value.code == 2


def test_many_files_hashed_in_parallel_batches_all_come_back_whole(tmp_path: Path) -> None:
    """Several sha256sum at once, 2,000 files each: every record whole, none lost."""
    root = tmp_path / "many"
    for i in range(5_000):
        folder = root / f"d{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file with a longer name to fill the buffers {i}").write_text(f"{i}\n")
    manifest = parse(manifest_bytes(root))
    proof = compare(DataProof("main", "manifest", str(root), "m"), manifest.entries,
                    guest_listing(root))  # fmt: skip
    assert proof.passed
    assert proof.files_matching == 5_000


def test_a_manifest_written_into_its_own_folder_leaves_itself_out(tmp_path: Path) -> None:
    root = tmp_path / "site"
    make_tree(root)
    main(["manifest", str(root), "-o", str(root / "files [v1].manifest")])
    manifest = parse((root / "files [v1].manifest").read_bytes())
    assert b"files [v1].manifest" not in {e.path for e in manifest.entries}
    assert len(manifest.entries) == 11  # the tree's 9 files and the two excluded ones
    found = guest_listing(root, manifest.header.excludes)
    assert b"files [v1].manifest" not in found


def test_the_drill_reads_each_manifest_and_says_what_its_signature_proves(tmp_path: Path) -> None:
    from harness.drill.dataproof import read_manifests
    from harness.errors import PhaseFailed
    from harness.scenario.model import ExpectSpec

    root = tmp_path / "site"
    make_tree(root)
    generate(tmp_path / "k")
    (tmp_path / "signed.manifest").write_bytes(manifest_bytes(root, tmp_path / "k"))
    (tmp_path / "plain.manifest").write_bytes(manifest_bytes(root))
    key = tmp_path / "k.pub"
    said = [e.signature for e in read_manifests((
        ExpectSpec(tmp_path / "signed.manifest", public_key=key),
        ExpectSpec(tmp_path / "signed.manifest"),
        ExpectSpec(tmp_path / "plain.manifest"),
    ))]  # fmt: skip
    assert said[0].endswith("the scenario's public key: verified")
    assert said[1].endswith("not verified: the scenario names no public_key")
    assert said[2] == "not signed"
    with pytest.raises(PhaseFailed, match="the manifest is not signed, and the scenario names"):
        read_manifests((ExpectSpec(tmp_path / "plain.manifest", public_key=key),))
    with pytest.raises(PhaseFailed) as failed:  # gone since the scenario was loaded
        read_manifests((ExpectSpec(tmp_path / "gone.manifest"),))
    assert failed.value.phase == "verify"
    assert "gone.manifest: No such file or directory" in str(failed.value)
