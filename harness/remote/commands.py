"""Commands in the guest over the drill's SSH connection, bounded and polling for
cancellation: a restore step (any command), and a tar stream piped into ``tar -x`` (the
data restore of file-level backups)."""

from __future__ import annotations

import os
import select
import shlex
import time
from collections.abc import Callable, Sequence
from typing import IO

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
    tap: Callable[[bytes], None] | None = None,
) -> int:  # fmt: skip
    """Pipe the tar stream ``data`` into ``tar -x -C target`` (plus ``extract``: what to take,
    how many leading folders to cut) in the guest; bytes sent. ``tap`` sees every chunk read
    (the host's hashing of the stream).

    Every wait is bounded by ``timeout_s`` and polls ``cancelled``: nothing blocks on a guest
    that stops reading (a full SSH window), and what the guest prints meanwhile (megabytes of
    tar warnings) is drained as it comes, so it can never stall the stream either."""
    channel = _session(client, "restore")
    quoted, more = shlex.quote(target), "".join(f" {shlex.quote(a)}" for a in extract)
    # B601: a fixed command; the target path and the arguments are quoted
    channel.exec_command(f"mkdir -p {quoted} && tar -x -C {quoted} -f -{more}")  # nosec B601
    said = bytearray()  # the guest's output, tail only
    deadline = time.monotonic() + timeout_s
    sent, pending, fd = 0, b"", data.fileno()
    try:
        while True:
            cancelled()
            _drain(channel, said)
            if time.monotonic() > deadline:
                raise PhaseTimeout("restore", f"the data restore took longer than {timeout_s:g}s "
                                              f"({sent} bytes restored)")  # fmt: skip
            if channel.exit_status_ready():  # tar in the guest ended before the stream did
                break
            if not pending:
                if not select.select([fd], [], [], 0.05)[0]:
                    continue
                pending = os.read(fd, CHUNK)
                if not pending:
                    break  # the whole stream is sent
                if tap is not None:
                    tap(pending)
            if not channel.send_ready():
                time.sleep(0.02)  # the guest has not taken the last chunk yet
                continue
            n = channel.send(pending)
            sent, pending = sent + n, pending[n:]
        channel.shutdown_write()
        while not _finished(channel):  # its last words too: they may be the reason
            cancelled()
            _drain(channel, said)
            if time.monotonic() > deadline:
                raise PhaseTimeout("restore", f"tar in the guest did not finish within "
                                              f"{timeout_s:g}s")  # fmt: skip
            time.sleep(0.05)
        _drain(channel, said)
        status = channel.recv_exit_status()
    except (OSError, paramiko.SSHException) as exc:
        raise PhaseFailed("restore", f"the guest stopped reading: "
                                     f"{_last_lines(said) or exc}") from exc  # fmt: skip
    finally:
        channel.close()
    if status != 0:
        raise PhaseFailed("restore", f"tar -x in the guest exited {status}: {_last_lines(said)}")
    if not _only_padding(pending, fd, deadline, cancelled, timeout_s):
        raise PhaseFailed("restore", f"tar in the guest ended before the whole stream was sent "
                                     f"({sent} bytes): {_last_lines(said)}")  # fmt: skip
    return sent


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
    return " | ".join(said.decode(errors="replace").strip().splitlines()[-5:])


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1][:300] if lines else "no output"
