"""A copy-on-write view of a repository folder, for a tool that writes while it only reads
(``borg check`` saves its config and a nonce): in a private mount namespace the repository
is bind-mounted read-only, and an overlay over it takes the tool's writes into a throw-away
tmpfs. The repository itself is never written; the drill's before/after proof still holds
it to that. Needs root (mount namespaces), as drills do."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# $1 the repository, $2 the view's folder; then the tool's argv
_SCRIPT = (
    'mount --bind "$1" "$2/ro" && mount -o remount,bind,ro "$2/ro" && '
    'mount -t tmpfs rdrill-view "$2/t" && mkdir "$2/t/u" "$2/t/w" && '
    'mount -t overlay rdrill-view -o "lowerdir=$2/ro,upperdir=$2/t/u,workdir=$2/t/w" '
    '"$2/view" && shift 2 && exec "$@"'
)


@contextmanager
def copy_on_write(repository: Path) -> Iterator[tuple[list[str], str]]:
    """The argv prefix that runs a command in the view, and the view's path for it."""
    root = Path(tempfile.mkdtemp(prefix="rdrill-view-"))
    try:
        for folder in ("ro", "t", "view"):
            (root / folder).mkdir()
        yield (["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _SCRIPT,
                "sh", str(repository), str(root)], str(root / "view"))  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
