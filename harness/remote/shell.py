"""Shell command lines for the guest, built in one place (no paramiko here: checks use it too)."""

from __future__ import annotations

import shlex


def as_user(command: str, user: str | None, root: bool = True) -> str:
    """``command`` for ``sh -c``, run as ``user`` when given: ``runuser`` when the login is
    root, else ``sudo -n``. It runs from ``/``: started in root's home, a shell of another user
    would print "could not change directory to /root" into the command's output."""
    if user is None:
        return command
    wrapper = "runuser -u" if root else "sudo -n -u"
    return f"cd / && {wrapper} {shlex.quote(user)} -- sh -c {shlex.quote(command)}"
