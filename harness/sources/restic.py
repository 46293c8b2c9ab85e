"""A restic snapshot, from a local repository or any URL restic understands (sftp:, s3:,
rest:, …): the restore point is the snapshot's own time. "latest" is the newest snapshot
that restic's own selectors admit (``host``, ``tags``, ``path``), as ``restic restore
latest --host …`` would choose it."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

from harness.errors import PhaseFailed
from harness.sources.files import (
    FileLevelSource,
    Inspected,
    json_lines,
    parse_time,
    password_env,
    pick_latest,
)


class ResticSource(FileLevelSource):
    #: Pack files: named by the SHA-256 of their content, never rewritten.
    written_once = ("data/",)
    written_once_are = "content-addressed file(s)"

    def _restic(self, *args: str, repository: str = "") -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        return ["restic", "--repo", repository or self.spec.repository, "--no-lock",
                "--no-cache", *args]  # fmt: skip

    def integrity_argv(self, location: str) -> list[str]:
        spec = self.spec.integrity
        subset = spec.read_data_subset if spec else None
        return self._restic("check", *([f"--read-data-subset={subset}"] if subset else []),
                            repository=location)  # fmt: skip

    def integrity_summary(self, output: str) -> str:
        said = [line.strip() for line in output.splitlines()
                if line.startswith(("read ", "no errors", "Fatal", "error"))]  # fmt: skip
        return "; ".join(said) or super().integrity_summary(output)

    def environment(self) -> dict[str, str]:
        if self.spec.password_file is not None:
            return {**super().environment(), "RESTIC_PASSWORD_FILE": str(self.spec.password_file)}
        return {**super().environment(), **password_env(self.spec, "RESTIC_PASSWORD")}

    def selected(self, snapshot: dict[str, Any]) -> bool:
        """restic's own semantics: the host, every tag, and the path among the snapshot's."""
        spec = self.spec
        return ((spec.host is None or snapshot.get("hostname") == spec.host)
                and set(spec.tags) <= set(snapshot.get("tags") or ())
                and (spec.snapshot_path is None
                     or spec.snapshot_path in (snapshot.get("paths") or ())))  # fmt: skip

    pin = ("snapshot", "time", "id")

    def points(self) -> list[dict[str, Any]]:
        return self._snapshots()

    def _snapshots(self) -> list[dict[str, Any]]:
        out = self.run_tool(self._restic("snapshots", "--json"))
        try:
            return list(json.loads(out) or [])
        except ValueError as exc:
            raise PhaseFailed("verify", f"restic snapshots: unreadable answer ({exc})") from exc

    def inspect(self) -> Inspected:
        snapshots = self._snapshots()
        warnings: tuple[str, ...] = ()
        if self.spec.snapshot is None:
            chosen, warnings = pick_latest(snapshots, "time", "hostname", self.spec,
                                           self.selected, "snapshot")  # fmt: skip
        else:
            wanted = self.spec.snapshot
            found = next((s for s in snapshots if s["id"].startswith(wanted)), None)
            if found is None:
                raise PhaseFailed("verify", f"restic: no snapshot {wanted!r} in the repository "
                                            f"({len(snapshots)} snapshot(s))")  # fmt: skip
            if not self.selected(found):
                raise PhaseFailed("verify", f"restic snapshot {wanted} does not match "
                                            f"{self.spec.selector}")  # fmt: skip
            chosen = found
        self.snapshot_id = chosen["id"]
        paths = [str(p) for p in chosen.get("paths") or ()]
        self._check_subpath(paths)
        host = str(chosen.get("hostname", "?"))
        return Inspected(
            f"restic snapshot {chosen['id'][:8]} of {', '.join(paths)} on {host}",
            parse_time(chosen["time"]), "restic snapshot time",
            {"tool": "restic", "snapshot": chosen["id"], "paths": ", ".join(paths),
             "hostname": host, "tags": ", ".join(chosen.get("tags") or ()),
             "selector": self.spec.selector or ("the snapshot named" if self.spec.snapshot
                                                else "none: the newest snapshot of any host"),
             "snapshots in repository": str(len(snapshots))},
            warnings=warnings,
        )  # fmt: skip

    def _check_subpath(self, paths: list[str]) -> None:
        """A subpath outside what the snapshot backed up fails here, not at the restore."""
        sub = self.spec.subpath
        if sub is None or not paths:
            return
        inside = any(sub == p or sub.startswith(p.rstrip("/") + "/")
                     for p in map(posixpath.normpath, paths))  # fmt: skip
        if not inside:
            held = ", ".join(paths)
            raise PhaseFailed("verify", f"subpath {sub} is not in restic snapshot "
                                        f"{self.snapshot_id[:8]} (it holds {held})")  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        found = []
        under = ["--recursive", self.spec.subpath] if self.spec.subpath else []
        listing = self.run_tool(self._restic("ls", "--json", self.snapshot_id, *under))
        for node in _nodes(listing):
            small = int(node.get("size", 0)) <= self.sample_max_bytes
            if node.get("type") == "file" and small:
                found.append(str(node["path"]).lstrip("/"))
                if len(found) >= limit:
                    break
        return found

    def system_names(self, paths: tuple[str, ...]) -> set[str]:
        """``restic ls`` of each path: the path itself and, for a folder, what is in it."""
        listing = self.run_tool(self._restic("ls", "--json", self.snapshot_id,
                                             *(f"/{self.rooted(p)}" for p in paths)))  # fmt: skip
        return {self.unrooted(str(node["path"])) for node in _nodes(listing)}

    def system_file(self, path: str) -> bytes:
        return self.file_content(self.rooted(path))

    def file_content(self, path: str) -> bytes:
        return self.tool_bytes(self._restic("dump", self.snapshot_id, f"/{path}"))

    def stream_command(self) -> list[str]:
        return self._restic("dump", "--archive", "tar", self.snapshot_id, self.spec.subpath or "/")


def _nodes(listing: str) -> Iterator[dict[str, Any]]:
    """The nodes of ``restic ls --json`` (its first line is the snapshot)."""
    return (node for node in json_lines(listing) if node.get("struct_type") == "node")
