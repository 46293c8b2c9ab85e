"""Commands in the guest over the drill's SSH connection, bounded and polling for
cancellation: a restore step (any command), and a tar stream piped into ``tar -x`` (the
data restore of file-level backups)."""

from __future__ import annotations

import os
import re
import secrets
import select
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, overload

import paramiko

from harness.errors import PhaseFailed, PhaseTimeout

CHUNK = 256 * 1024
OUTPUT_KEEP = 64 * 1024


def run_step(
    client: paramiko.SSHClient, phase: str, command: str, timeout_s: float,
    cancelled: Callable[[], None],
) -> str:  # fmt: skip
    """Run ``command``; its output (stdout and stderr merged, tail). Non-zero exit fails
    ``phase`` naming the exit code and the last output line; so does the time limit."""
    status, text = run_polled(client, phase, command, timeout_s, cancelled)
    if status != 0:
        raise PhaseFailed(phase, f"exited {status}: {_last_line(text)}", output=text)
    return text


def run_polled(
    client: paramiko.SSHClient, phase: str, command: str, timeout_s: float,
    cancelled: Callable[[], None],
) -> tuple[int, str]:  # fmt: skip
    """Run ``command`` to its end, polling ``cancelled`` (which may raise to stop the wait);
    its exit status and output (stdout and stderr merged, tail). The time limit fails
    ``phase``."""
    channel = _session(client, phase)
    channel.set_combine_stderr(True)
    # B601: the scenario's own restore step, or a fixed command, in the throw-away guest
    channel.exec_command(command)  # nosec B601
    output = bytearray()
    deadline = time.monotonic() + timeout_s
    while not _finished(channel):
        cancelled()
        if time.monotonic() > deadline:
            channel.close()
            raise PhaseTimeout(phase, f"still running after {timeout_s:g}s: "
                                      f"{_last_line(output.decode(errors='replace'))}")  # fmt: skip
        if channel.recv_ready():
            output += channel.recv(CHUNK)
            del output[:-OUTPUT_KEEP]
        else:
            _wait_for_more(channel, 0.05)
    status = channel.recv_exit_status()
    channel.close()
    return status, output.decode(errors="replace")


def run_capture(
    client: paramiko.SSHClient, phase: str, command: str, timeout_s: float,
    cancelled: Callable[[], None], stdin: bytes = b"",
) -> tuple[int, bytes, str]:  # fmt: skip
    """Run ``command`` to its end, given ``stdin``; its exit status, its whole standard output
    as bytes (a listing, not a log) and the tail of its standard error. Bounded like
    :func:`run_polled`; the command must read all its input before it writes much."""
    channel = _session(client, phase)
    # B601: a fixed command of the harness; paths in it are quoted
    channel.exec_command(command)  # nosec B601
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        offset = 0
        while offset < len(stdin):
            cancelled()
            if time.monotonic() > deadline:
                raise PhaseTimeout(phase, f"the guest did not take its input within "
                                          f"{timeout_s:g}s")  # fmt: skip
            if channel.send_ready():
                offset += channel.send(stdin[offset : offset + CHUNK])
            else:
                time.sleep(0.02)
        channel.shutdown_write()
        while not _finished(channel):
            cancelled()
            if time.monotonic() > deadline:
                raise PhaseTimeout(phase, f"still running after {timeout_s:g}s "
                                          f"({len(out)} bytes of output so far)")  # fmt: skip
            busy = False
            while channel.recv_ready():
                out += channel.recv(CHUNK)
                busy = True
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(CHUNK)
                del err[:-OUTPUT_KEEP]
                busy = True
            if not busy:
                _wait_for_more(channel, 0.05)
        return channel.recv_exit_status(), bytes(out), err.decode(errors="replace")
    except (OSError, paramiko.SSHException) as exc:
        raise PhaseFailed(phase, f"the SSH connection failed: {exc}") from exc
    finally:
        channel.close()


def stream_into(
    client: paramiko.SSHClient, target: str, data: IO[bytes], timeout_s: float,
    cancelled: Callable[[], None], extract: Sequence[str] = (),
    tap: Callable[[bytes], None] | None = None, link: Opener | None = None,
) -> int:  # fmt: skip
    """Pipe the tar stream ``data`` into ``tar -x -C target`` (plus ``extract``: what to take,
    how many leading folders to cut) in the guest; bytes sent. ``tap`` sees every chunk read
    (the host's hashing of the stream).

    With ``link`` (the rescue system's restores, see :data:`DIRECT_LISTENER`), the bytes go
    over a TCP connection of their own that ``link(port, timeout)`` opens to the guest,
    beside the SSH session that runs ``tar`` and reports; otherwise through that session.

    Every wait is bounded by ``timeout_s`` and polls ``cancelled``: nothing blocks on a guest
    that stops reading (a full SSH window or TCP buffer), and what the guest prints
    meanwhile (megabytes of tar warnings) is drained as it comes, so it can never stall the
    stream either."""
    channel = _session(client, "restore")
    quoted, more = shlex.quote(target), "".join(f" {shlex.quote(a)}" for a in extract)
    tar = f"tar -x -C {quoted} -f -{more}"
    said = bytearray()  # the guest's output, tail only
    deadline = time.monotonic() + timeout_s
    out: Any = channel
    try:
        if link is None:
            # B601: a fixed command; the target path and the arguments are quoted
            channel.exec_command(f"mkdir -p {quoted} && {tar}")  # nosec B601
        else:
            out = _direct(channel, link, f"mkdir -p {quoted} && {DIRECT_LISTENER} | {tar}",
                          said, deadline, cancelled)  # fmt: skip
        sent, pending = _pump(data, tap, channel, out, said, deadline, timeout_s, cancelled)
        out.shutdown(socket.SHUT_WR)  # the end of the stream (a channel's shutdown_write)
        while not _finished(channel):  # its last words too: they may be the reason
            cancelled()
            _drain(channel, said)
            if time.monotonic() > deadline:
                raise PhaseTimeout("restore", f"tar in the guest did not finish within "
                                              f"{timeout_s:g}s")  # fmt: skip
            _wait_for_more(channel, 0.05)
        _drain(channel, said)
        status = channel.recv_exit_status()
    except (OSError, paramiko.SSHException) as exc:
        if link is None:
            raise PhaseFailed("restore", f"the guest stopped reading: "
                                         f"{_last_lines(said) or exc}") from exc  # fmt: skip
        _last_words(channel, said, min(deadline, time.monotonic() + LAST_WORDS_S), cancelled)
        raise PhaseFailed("restore", f"the direct restore failed ({exc}): "
                                     f"{_last_lines(said)}") from exc  # fmt: skip
    finally:
        if out is not channel:
            out.close()
        channel.close()
    if status != 0:
        raise PhaseFailed("restore", f"tar -x in the guest exited {status}: {_last_lines(said)}")
    if link is not None and _said(said, b"received") != sent:
        raise PhaseFailed("restore", f"the guest received {_said(said, b'received')} of the "
                                     f"{sent} bytes sent: {_last_lines(said)}")  # fmt: skip
    after = _said(said, b"after-tar", 2)
    if (after and (after[1] or after[0] > PADDING_MAX)) or not _only_padding(
            pending, data.fileno(), deadline, cancelled, timeout_s):  # fmt: skip
        raise PhaseFailed("restore", f"tar in the guest ended before the whole stream was sent "
                                     f"({sent} bytes): {_last_lines(said)}")  # fmt: skip
    return sent


def _pump(
    data: IO[bytes], tap: Callable[[bytes], None] | None, channel: paramiko.Channel, out: Any,
    said: bytearray, deadline: float, timeout_s: float, cancelled: Callable[[], None],
) -> tuple[int, bytes]:  # fmt: skip
    """Send ``data`` to ``out`` (the command's channel, or the direct connection) until it
    ends or the command does; bytes sent, and what was read but not sent."""
    sent, pending, fd = 0, b"", data.fileno()
    out.settimeout(SEND_WAIT_S)  # a full window or buffer: look at the guest, then again
    while True:
        cancelled()
        _drain(channel, said)
        if time.monotonic() > deadline:
            raise PhaseTimeout("restore", f"the data restore took longer than {timeout_s:g}s "
                                          f"({sent} bytes restored)")  # fmt: skip
        if channel.exit_status_ready():  # tar in the guest ended before the stream did
            return sent, pending
        if not pending:
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            pending = os.read(fd, CHUNK)
            if not pending:
                return sent, pending  # the whole stream is sent
            if tap is not None:
                tap(pending)
        try:
            n = out.send(pending)
        except TimeoutError:
            continue  # the guest has not taken the last chunk yet
        sent, pending = sent + n, pending[n:]


#: Opens a TCP connection to the guest's ``port`` within ``timeout`` seconds: a socket, or a
#: socket-like SSH channel through a remote lab's host.
Opener = Callable[[int, float], Any]

#: The guest's end of a direct stream (``listener.pl``, in perl-base: on every Debian system,
#: the rescue's too). It listens on a port the kernel picks and says which on stderr; it
#: reads the drill's one-time token on its stdin (the SSH session: never on a command line)
#: and takes one connection only, whose first bytes must be that token (within 30 s); then
#: every byte to its stdout (``tar -x``) and the count to stderr. When ``tar`` stops reading
#: (it found the end-of-archive blocks) it reads on to the end and says how many bytes came
#: after and how many of them were not zero: a writer's padding is no lost data, anything
#: else is. A lab machine that connects first only makes the restore fail, naming why; what
#: tar wrote is proven file by file after.
DIRECT_LISTENER = "perl -e " + shlex.quote(Path(__file__).with_name("listener.pl").read_text())
DIRECT_PROBE = "perl -MIO::Socket::INET -e 1"  # what the listener needs of the guest
DIRECT_START_S = 30.0  # for the listener to say its port
LAST_WORDS_S = 5.0  # for the guest to say why a direct connection failed
SEND_WAIT_S = 0.05


def can_listen(client: paramiko.SSHClient, cancelled: Callable[[], None]) -> bool:
    """Whether the guest can run :data:`DIRECT_LISTENER` (a rescue image of the user's own
    may have no perl: its restore then goes through SSH)."""
    status, _ = run_polled(client, "restore", DIRECT_PROBE, DIRECT_START_S, cancelled)
    return status == 0


def _direct(
    channel: paramiko.Channel, link: Opener, command: str, said: bytearray, deadline: float,
    cancelled: Callable[[], None],
) -> Any:  # fmt: skip
    """Start ``command`` (its first stage :data:`DIRECT_LISTENER`), hand it the token over
    SSH, and open the connection it listens for; that connection, the token sent."""
    # B601: a fixed command (see stream_into). No pipefail: a listener that fails never says
    # "received", and that count is checked.
    channel.exec_command(command)  # nosec B601
    token = secrets.token_hex(16)
    channel.sendall(f"{token}\n".encode())
    channel.shutdown_write()
    wait = min(deadline, time.monotonic() + DIRECT_START_S)
    while (port := _said(said, b"port")) is None:
        cancelled()
        if _finished(channel):
            raise PhaseFailed("restore", f"the guest's listener ended: {_last_lines(said)}")
        if time.monotonic() > wait:
            raise PhaseTimeout("restore", f"the guest's listener did not start within "
                                          f"{DIRECT_START_S:g}s")  # fmt: skip
        _wait_for_more(channel, 0.05)
        _drain(channel, said)
    sock = link(port, max(1.0, wait - time.monotonic()))
    try:
        sock.sendall(token.encode())
    except BaseException:
        sock.close()
        raise
    return sock


def _last_words(
    channel: paramiko.Channel, said: bytearray, until: float, cancelled: Callable[[], None]
) -> None:
    """What the guest says until its command ends (or ``until``): why a connection failed."""
    while not _finished(channel) and time.monotonic() < until:
        cancelled()
        _wait_for_more(channel, 0.05)
        _drain(channel, said)
    _drain(channel, said)


@overload
def _said(said: bytearray, what: bytes) -> int | None: ...
@overload
def _said(said: bytearray, what: bytes, count: int) -> tuple[int, ...] | None: ...
def _said(said: bytearray, what: bytes, count: int = 0) -> int | tuple[int, ...] | None:
    """The number the direct listener last said after ``rdrill-<what>`` (``count`` numbers,
    if given), if it did."""
    numbers = rb" (\d+)" * (count or 1)
    found = re.findall(rb"^rdrill-" + what + numbers + rb"$", said, re.MULTILINE)
    if not found:
        return None
    return tuple(int(n) for n in found[-1]) if count else int(found[-1])


PADDING_MAX = 1024 * 1024


def _only_padding(
    pending: bytes, fd: int, deadline: float, cancelled: Callable[[], None], timeout_s: float
) -> bool:  # fmt: skip
    """Whether what the guest's tar left unread (once it ended well) is only the zero
    padding writers add after the end-of-archive blocks (to a 10 KiB record, or a larger
    blocking factor): then nothing of the backup was left out. Read to the stream's end,
    within the restore's bound: a tool that stops writing without ending is a timeout."""
    left = len(pending)
    if pending.strip(b"\0"):
        return False
    while time.monotonic() < deadline:
        cancelled()
        if not select.select([fd], [], [], 0.05)[0]:
            continue
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return True
        left += len(chunk)
        if chunk.strip(b"\0") or left > PADDING_MAX:
            return False
    raise PhaseTimeout("restore", f"tar in the guest finished, but the backup's stream did "
                                  f"not end within the restore's {timeout_s:g}s")  # fmt: skip


def _drain(channel: paramiko.Channel, said: bytearray) -> None:
    """Take whatever the guest printed (stdout and stderr), keeping the tail."""
    while channel.recv_stderr_ready():
        said += channel.recv_stderr(CHUNK)
    while channel.recv_ready():
        said += channel.recv(CHUNK)
    del said[:-OUTPUT_KEEP]


def _wait_for_more(channel: paramiko.Channel, seconds: float) -> None:
    """Until the command's output or its end arrives, or ``seconds`` pass: a command that
    ended is seen at once, not at the next tick of a fixed sleep (each exec lost 10-25 ms on
    average to one). The channel's ``fileno`` is readable while output waits and after its
    EOF; the exit status has its own event."""
    if channel.eof_received:
        channel.status_event.wait(seconds)
    else:
        select.select([channel], [], [], seconds)


def _finished(channel: paramiko.Channel) -> bool:
    """The command exited *and* all its output arrived. sshd sends the exit status when the
    command exits, possibly before the last of its output: the end of the output is the
    channel's EOF, sent after it (a listing read to the exit status alone was once cut)."""
    return bool(channel.exit_status_ready() and channel.eof_received
                and not channel.recv_ready() and not channel.recv_stderr_ready())  # fmt: skip


def _session(client: paramiko.SSHClient, phase: str) -> paramiko.Channel:
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise PhaseFailed(phase, "the SSH connection to the guest is gone")
    try:
        return transport.open_session()
    except (OSError, paramiko.SSHException) as exc:
        raise PhaseFailed(phase, f"cannot open an SSH session: {exc}") from exc


def _last_lines(said: bytearray) -> str:
    lines = said.decode(errors="replace").strip().splitlines()
    return " | ".join([line for line in lines if not line.startswith("rdrill-")][-5:])


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1][:300] if lines else "no output"
