"""A restic snapshot, from a local repository or any URL restic understands (sftp:, s3:,
rest:, …): the restore point is the snapshot's own time."""

from __future__ import annotations

import json

from harness.errors import PhaseFailed
from harness.sources.files import FileLevelSource, Inspected, newest, parse_time, password_env


class ResticSource(FileLevelSource):
    def _restic(self, *args: str) -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        return ["restic", "--repo", self.spec.repository, "--no-lock", "--no-cache", *args]

    def environment(self) -> dict[str, str]:
        if self.spec.password_file is not None:
            return {**super().environment(), "RESTIC_PASSWORD_FILE": str(self.spec.password_file)}
        return {**super().environment(), **password_env(self.spec, "RESTIC_PASSWORD")}

    def inspect(self) -> Inspected:
        out = self.run_tool(self._restic("snapshots", "--json"))
        try:
            snapshots = json.loads(out) or []
        except ValueError as exc:
            raise PhaseFailed("verify", f"restic snapshots: unreadable answer ({exc})") from exc
        wanted = self.spec.snapshot or "latest"
        if wanted == "latest":
            chosen = newest(snapshots, "time")
        else:
            chosen = next((s for s in snapshots if s["id"].startswith(wanted)), None)
        if chosen is None:
            raise PhaseFailed("verify", f"restic: no snapshot {wanted!r} in the repository "
                                        f"({len(snapshots)} snapshot(s))")  # fmt: skip
        self.snapshot_id = chosen["id"]
        paths = ", ".join(chosen.get("paths", []))
        return Inspected(
            f"restic snapshot {chosen['id'][:8]} of {paths} on {chosen.get('hostname', '?')}",
            parse_time(chosen["time"]), "restic snapshot time",
            {"tool": "restic", "snapshot": chosen["id"], "paths": paths,
             "hostname": chosen.get("hostname", ""),
             "snapshots in repository": str(len(snapshots))},
        )  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        found = []
        for line in self.run_tool(self._restic("ls", "--json", self.snapshot_id)).splitlines():
            try:
                node = json.loads(line)
            except ValueError:
                continue
            small = int(node.get("size", 0)) <= self.sample_max_bytes
            if node.get("struct_type") == "node" and node.get("type") == "file" and small:
                found.append(str(node["path"]).lstrip("/"))
                if len(found) >= limit:
                    break
        return found

    def file_content(self, path: str) -> bytes:
        return self.tool_bytes(self._restic("dump", self.snapshot_id, f"/{path}"))

    def stream_command(self) -> list[str]:
        return self._restic("dump", "--archive", "tar", self.snapshot_id, "/")
