"""The restore stream into the guest, against a real SSH server on loopback (paramiko's own
server side, standing in for the guest's sshd): every wait bounded, a guest that stops
reading or prints megabytes can neither hang nor deadlock the drill, and an abort is prompt."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from harness.errors import Aborted, PhaseFailed, PhaseTimeout
from harness.remote.commands import can_listen, run_capture, run_polled, stream_into

MIB = 1024 * 1024
RECORD = 10240  # tar's default record: an archive's end-of-archive blocks lie within it


class Guest(paramiko.ServerInterface):
    """A guest whose ``tar -x`` behaves as told: reads all, never reads, or chatters."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.received, self.done = behaviour, 0, threading.Event()

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self.tar, args=(channel,), daemon=True).start()
        return True

    def tar(self, channel: paramiko.Channel) -> None:
        if self.behaviour == "exits before its last output":  # as sshd may: exit-status
            channel.sendall(b"first part\0")  # is sent when the child exits, while its
            channel.send_exit_status(0)  # output is still on its way
            time.sleep(0.5)
            channel.sendall(b"the last record\0")
            channel.sendall_stderr(b"a last warning\n")
            channel.shutdown_write()  # EOF: now everything was sent
            time.sleep(0.2)
            channel.close()
            return
        if self.behaviour == "stalls":  # never reads: the SSH window fills up
            self.done.wait(60)
            return
        if self.behaviour == "chatters":  # megabytes of warnings before it reads anything
            for _ in range(8):
                channel.sendall_stderr(b"tar: warning: a long line of complaint\n" * 27000)
        if self.behaviour == "ends at its marker":  # tar: done after the end-of-archive blocks
            while self.received < RECORD:
                self.received += len(channel.recv(RECORD - self.received))
            channel.send_exit_status(0)
            channel.close()
            return
        while data := channel.recv(256 * 1024):
            self.received += len(data)
        if self.behaviour == "fails":
            channel.sendall_stderr(b"tar: Cannot open: Read-only file system\n")
        channel.send_exit_status(2 if self.behaviour == "fails" else 0)
        channel.close()


@pytest.fixture
def guest(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Guest, paramiko.SSHClient]]:
    server = Guest(request.param)
    client, close = _client(server, tmp_path)
    yield server, client
    server.done.set()
    close()


def _key(folder: Path) -> Path:
    path = folder / "key"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)  # fmt: skip
    return path


def stream(tmp_path: Path, client: paramiko.SSHClient, size: int, limit: float,
           cancelled: Callable[[], None] = lambda: None,
           pieces: tuple[bytes, ...] = (), gap: float = 1.0) -> tuple[float, object]:  # fmt: skip
    """Run stream_into in a thread that must end by itself: a hang is a failure, not a stuck
    test run. Its result (bytes sent, or the exception) and how long it took. ``pieces``:
    the stream comes from a tool writing them ``gap`` seconds apart (else ``size`` zeros)."""
    data = tmp_path / "stream.tar"
    data.write_bytes(b"\0" * size)
    if pieces:
        data.unlink()
        os.mkfifo(data)

        def tool() -> None:
            with contextlib.suppress(BrokenPipeError), data.open("wb") as out:
                for n, piece in enumerate(pieces):  # (the drill may have stopped reading)
                    time.sleep(gap if n else 0)
                    out.write(piece)
                    out.flush()

        threading.Thread(target=tool, daemon=True).start()

    def work() -> int:
        with data.open("rb") as fh:
            return stream_into(client, "/srv", fh, limit, cancelled)

    return bounded(work, limit)


def bounded(work: Callable[[], object], limit: float) -> tuple[float, object]:
    """``work`` in a thread that must end by itself (a hang is a failure, not a stuck test
    run): how long it took, and its result or the exception it raised."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:
            box.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit + 15)
    assert box, f"the stream hung past its {limit:g}s limit"
    return time.monotonic() - started, box[0]


@pytest.mark.parametrize("guest", ["reads", "chatters"], indirect=True)
def test_a_stream_is_sent_whole_and_megabytes_of_guest_warnings_do_not_deadlock_it(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    server, client = guest
    _, sent = stream(tmp_path, client, 6 * MIB, 60)
    assert sent == 6 * MIB == server.received


@pytest.mark.parametrize("guest", ["stalls"], indirect=True)
def test_a_guest_that_stops_reading_is_bounded_by_the_restore_timeout(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    took, outcome = stream(tmp_path, guest[1], 16 * MIB, 3)
    assert isinstance(outcome, PhaseTimeout)
    assert "took longer than 3s" in str(outcome)
    assert took < 10


@pytest.mark.parametrize("guest", ["fails"], indirect=True)
def test_the_guests_own_error_is_the_reason(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    _, outcome = stream(tmp_path, guest[1], MIB, 60)
    assert isinstance(outcome, PhaseFailed)
    assert "exited 2: tar: Cannot open: Read-only file system" in str(outcome)


@pytest.mark.parametrize("guest", ["stalls"], indirect=True)
def test_an_abort_stops_a_stalled_stream_at_once(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    deadline = time.monotonic() + 1.0

    def cancelled() -> None:
        if time.monotonic() > deadline:
            raise Aborted("SIGTERM")

    took, outcome = stream(tmp_path, guest[1], 16 * MIB, 600, cancelled)
    assert isinstance(outcome, Aborted)
    assert took < 5


@pytest.mark.parametrize("guest", ["ends at its marker"], indirect=True)
def test_zero_padding_after_the_archives_end_is_no_lost_data(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    """borg export-tar pads its archive past the end marker: tar in the guest stops reading
    there and exits 0. Nothing of the backup was left out."""
    archive = (b"x" * (RECORD - 1024) + b"\0" * 1024, b"\0" * (3 * RECORD))
    _, sent = stream(tmp_path, guest[1], 0, 60, pieces=archive)
    assert sent == RECORD


@pytest.mark.parametrize("guest", ["ends at its marker"], indirect=True)
def test_data_after_where_the_guest_stopped_reading_fails_the_restore(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    archive = (b"x" * RECORD, b"\0" * RECORD + b"more of the backup" + b"\0" * 100)
    _, outcome = stream(tmp_path, guest[1], 0, 60, pieces=archive)
    assert isinstance(outcome, PhaseFailed)
    assert "tar in the guest ended before the whole stream was sent" in str(outcome)


@pytest.mark.parametrize("guest", ["ends at its marker"], indirect=True)
def test_a_tool_that_stalls_after_the_guest_finished_is_a_timeout_not_a_short_archive(
    guest: tuple[Guest, paramiko.SSHClient], tmp_path: Path
) -> None:
    """The guest's tar read its archive and ended well; the tool then stops writing without
    ending its stream. That is the restore's bound running out, not tar ending early."""
    took, outcome = stream(tmp_path, guest[1], 0, 3, pieces=(b"x" * RECORD, b"\0" * RECORD),
                           gap=8)  # fmt: skip
    assert isinstance(outcome, PhaseTimeout), outcome
    assert "the backup's stream did not end within the restore's 3s" in str(outcome)
    assert took < 8


@pytest.mark.parametrize("guest", ["exits before its last output"], indirect=True)
def test_output_sent_after_the_exit_status_is_not_lost(guest: tuple[Guest, Any]) -> None:
    """A listing read to its end (the channel's EOF), not to the exit status: the proof of a
    restore once failed on a truncated last record."""
    _, client = guest
    status, out, err = run_capture(client, "restore proof", "list", 30, lambda: None)
    assert (status, out) == (0, b"first part\0the last record\0")
    assert err == "a last warning\n"


@pytest.mark.parametrize("guest", ["exits before its last output"], indirect=True)
def test_a_step_s_output_after_its_exit_status_is_kept(guest: tuple[Guest, Any]) -> None:
    _, client = guest
    status, output = run_polled(client, "step", "anything", 30, lambda: None)
    assert status == 0
    assert output == "first part\0the last record\0a last warning\n"


class Shell(Guest):
    """A guest that runs the command it is sent, in bash on this machine: the real direct
    listener (perl) and the real ``tar -x``. ``replace`` swaps a part of the command (a
    tar that stalls)."""

    def __init__(self, replace: tuple[str, str] = ("", "")) -> None:
        super().__init__("shell")
        self.replace = replace

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode()
        if self.replace[0]:
            text = text.replace(*self.replace)
        proc = subprocess.Popen(["bash", "-c", text], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

        def pipe(read: Callable[[int], bytes], write: Callable[[bytes], Any]) -> None:
            with contextlib.suppress(OSError):  # the client may be gone (the test ended)
                while data := read(65536):
                    write(data)

        def stdin() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError), proc.stdin:
                pipe(channel.recv, proc.stdin.write)

        def run() -> None:
            time.sleep(0.1)  # paramiko answers the exec request after this method returns
            assert proc.stdout is not None
            assert proc.stderr is not None
            err = threading.Thread(target=pipe, args=(proc.stderr.read1, channel.sendall_stderr))
            err.start()
            pipe(proc.stdout.read1, channel.sendall)
            err.join()
            proc.stdout.close()
            proc.stderr.close()
            status = proc.wait()
            with contextlib.suppress(OSError):
                channel.send_exit_status(status)
                channel.shutdown_write()
                channel.close()

        threading.Thread(target=stdin, daemon=True).start()
        threading.Thread(target=run, daemon=True).start()
        return True


def _client(server: Guest, tmp_path: Path) -> tuple[paramiko.SSHClient, Callable[[], None]]:
    """A client logged in to ``server`` on loopback, and what closes both ends."""
    host_key = paramiko.Ed25519Key.from_private_key_file(str(_key(tmp_path)))
    listener = socket.create_server(("127.0.0.1", 0))
    transports: list[paramiko.Transport] = []

    def accept() -> None:
        conn, _ = listener.accept()
        transport = paramiko.Transport(conn)
        transports.append(transport)
        transport.add_server_key(host_key)
        transport.start_server(server=server)

    threading.Thread(target=accept, daemon=True).start()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - a test server
    client.connect("127.0.0.1", port=listener.getsockname()[1], username="root",
                   key_filename=str(_key(tmp_path)), allow_agent=False, look_for_keys=False,
                   timeout=10)  # fmt: skip

    def close() -> None:
        client.close()
        for transport in transports:
            transport.close()
        listener.close()

    return client, close


def loopback(port: int, timeout: float) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def archive(tmp_path: Path) -> Path:
    """A real tar of a few files (one of 3 MiB of random bytes)."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("db\n")
    (tree / "big").write_bytes(os.urandom(3 * MIB))
    out = tmp_path / "backup.tar"
    subprocess.run(["tar", "-c", "-f", str(out), "-C", str(tree), "."], check=True)
    return out


def direct(tmp_path: Path, server: Guest, link: Callable[[int, float], Any], limit: float = 60,
           after: bytes = b"") -> tuple[float, object, Path]:  # fmt: skip
    """stream_into over a direct link, in a thread that must end by itself; ``after``: what
    the stream holds after the archive's end."""
    client, close = _client(server, tmp_path)
    into, tar = tmp_path / "restored", archive(tmp_path)
    with tar.open("ab") as fh:
        fh.write(after)

    def work() -> int:
        with tar.open("rb") as fh:
            return stream_into(client, str(into), fh, limit, lambda: None, link=link)

    try:
        took, outcome = bounded(work, limit)
    finally:
        close()
    return took, outcome, into


def test_a_direct_stream_restores_every_byte_beside_the_ssh_session(tmp_path: Path) -> None:
    opened: list[int] = []

    def link(port: int, timeout: float) -> socket.socket:
        opened.append(port)
        return loopback(port, timeout)

    _, sent, into = direct(tmp_path, Shell(), link)
    assert sent == (tmp_path / "backup.tar").stat().st_size
    assert len(opened) == 1  # the port the listener said, opened once
    assert (into / "etc" / "hostname").read_text() == "db\n"
    assert (into / "big").read_bytes() == (tmp_path / "tree" / "big").read_bytes()


def test_a_connection_without_the_token_is_refused_and_fails_the_restore(tmp_path: Path) -> None:
    """Another machine of the lab that connects first (it could see the port being opened)
    is refused; the restore fails naming it, and nothing of what it sent is extracted."""

    def intruder(port: int, timeout: float) -> socket.socket:
        evil = loopback(port, timeout)
        evil.sendall(b"x" * 32 + b"\0" * 10240)
        evil.close()
        return loopback(port, timeout)

    _, outcome, into = direct(tmp_path, Shell(), intruder)
    assert isinstance(outcome, PhaseFailed), outcome
    assert "a connection without the drill's token: refused" in str(outcome)
    assert not any(into.iterdir())


def test_a_listener_that_never_says_its_port_fails_clearly(tmp_path: Path) -> None:
    """A guest without perl (not the rescue system): its shell's own words are the reason."""
    _, outcome, _ = direct(tmp_path, Shell(("perl -e", "no-such-perl -e")), loopback)
    assert isinstance(outcome, PhaseFailed), outcome
    assert "the guest's listener ended: " in str(outcome)
    assert "no-such-perl: command not found" in str(outcome)


def test_a_guest_that_stops_reading_a_direct_stream_is_bounded(tmp_path: Path) -> None:
    took, outcome, _ = direct(tmp_path, Shell(("| tar -x", "| sleep 60 | tar -x")), loopback,
                              limit=4)  # fmt: skip
    assert isinstance(outcome, PhaseTimeout), outcome  # while sending, or after: the whole
    assert str(outcome).startswith(("the data restore took longer than 4s", "tar in the guest "
                                    "did not finish within 4s"))  # (it fits in the buffers)
    assert took < 10


def test_a_guest_without_perl_is_found_before_its_restore(tmp_path: Path) -> None:
    """A rescue image of the user's own may lack perl: the drill asks first, and its restore
    then goes through SSH (booting._rebuild)."""
    for server, expected in ((Shell(), True), (Shell(("perl -M", "no-such-perl -M")), False)):
        client, close = _client(server, tmp_path)
        try:
            assert can_listen(client, lambda: None) is expected
        finally:
            close()


def test_padding_after_a_direct_streams_end_is_no_lost_data_and_anything_else_is(
    tmp_path: Path,
) -> None:
    """borg export-tar pads past the end-of-archive blocks: tar in the guest stops reading
    there, and the listener reads on. Zeros pass; data there fails, as through SSH."""
    padding = b"\0" * MIB
    for folder in ("zeros", "data"):
        (tmp_path / folder).mkdir()
    _, sent, into = direct(tmp_path / "zeros", Shell(), loopback, after=padding)
    assert sent == (tmp_path / "zeros" / "backup.tar").stat().st_size
    assert (into / "etc" / "hostname").read_text() == "db\n"
    # (data still in the pipe when tar stopped is not seen; through SSH, in sshd, neither)
    _, outcome, _ = direct(tmp_path / "data", Shell(), loopback,
                           after=padding + b"more of the backup" + padding)  # fmt: skip
    assert isinstance(outcome, PhaseFailed), outcome
    assert "tar in the guest ended before the whole stream was sent" in str(outcome)
