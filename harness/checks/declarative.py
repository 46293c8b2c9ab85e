"""Declarative checks from the scenario, run through testinfra's host API on one connection.

Each check runs in a daemon thread bounded by its timeout: a hung command is a failed check
("no answer within 30s"), never a hung drill. HTTP checks are made from the harness over
the lab network, as a client would see the service; the rest run in the guest.
"""

from __future__ import annotations

import functools
import http.client
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.evidence.model import CheckResult
from harness.remote.shell import as_user
from harness.scenario.model import CheckSpec

MAX_OUTPUT = 16 * 1024
#: makes a TCP connection to (address, port) within a timeout: a socket or a channel
Connector = Callable[[str, int, float], Any]


@dataclass
class Outcome:
    """What one check found."""

    passed: bool
    expectation: str
    observed: str
    output: str = ""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n[... output clipped]"


def _service(host: Any, spec: CheckSpec, ip: str) -> Outcome:
    svc = host.service(spec.subject)
    want_running = spec.options.get("running", True)
    want_enabled = spec.options.get("enabled")
    running = bool(svc.is_running)
    wanted = [f"{'running' if want_running else 'stopped'}"]
    seen = [f"{'running' if running else 'stopped'}"]
    ok = running == want_running
    if want_enabled is not None:
        enabled = bool(svc.is_enabled)
        wanted.append("enabled" if want_enabled else "disabled")
        seen.append("enabled" if enabled else "disabled")
        ok = ok and enabled == want_enabled
    output = "" if ok else host.run("systemctl status --no-pager -n 15 %s", spec.subject).stdout
    return Outcome(ok, f"service {spec.subject} is {' and '.join(wanted)}", ", ".join(seen), output)


def _port(host: Any, spec: CheckSpec, ip: str) -> Outcome:
    """``5432`` (or ``tcp://5432``): something listens on that port, on any address (as users
    mean it: Debian's PostgreSQL listens on 127.0.0.1 and ::1 only). ``tcp://0.0.0.0:5432``:
    on exactly that address, as testinfra means it. Either way the observation says where."""
    want = spec.options.get("listening", True)
    if spec.subject.startswith("unix://"):
        listening = bool(host.socket(spec.subject).is_listening)
        return Outcome(listening == want, f"{spec.subject} {'' if want else 'not '}listening",
                       "listening" if listening else "not listening")  # fmt: skip
    proto, address, port = parse_socket(spec.subject)
    sockets = host.socket.get_listening_sockets()
    where = [f"[{a}]:{p}" if ":" in a else f"{a}:{p}"
             for s in sockets if (parsed := _listening(s)) and parsed[0] == proto
             and (a := parsed[1]) is not None and (p := parsed[2]) == port]  # fmt: skip
    if address is None:
        listening, subject = bool(where), f"{proto} port {port} (any address)"
    else:
        listening = bool(host.socket(f"{proto}://{address}:{port}").is_listening)
        subject = f"{proto}://{address}:{port}"
    if where:
        state = ("listening on " if listening else f"not listening on {address}:{port}; "
                 "listening on ") + ", ".join(where) + ("" if listening else " only")  # fmt: skip
    else:
        state = f"not listening on any address (no {proto} socket on port {port})"
    output = "" if listening == want else "\n".join(sockets)
    return Outcome(listening == want, f"{subject} {'' if want else 'not '}listening", state, output)


def parse_socket(subject: str) -> tuple[str, str | None, int]:
    """``5432`` → (tcp, None, 5432); ``udp://53``; ``tcp://127.0.0.1:5432``; ``tcp://[::1]:22``."""
    proto, _, rest = subject.rpartition("://")
    address, _, port = rest.rpartition(":")
    return proto or "tcp", address.strip("[]") or None, int(port)


def _listening(socket: str) -> tuple[str, str, int] | None:
    """testinfra's ``tcp://0.0.0.0:22`` / ``tcp://:::22`` → (tcp, address, port)."""
    proto, sep, rest = socket.partition("://")
    address, _, port = rest.rpartition(":")
    if not sep or proto == "unix" or not port.isdigit():
        return None
    return proto, address, int(port)


class _ViaConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket comes from ``via`` (a channel through a jump host)."""

    def __init__(self, host: str, *, timeout: float, via: Connector) -> None:
        super().__init__(host, timeout=timeout)
        self.via = via

    def connect(self) -> None:
        self.sock = self.via(self.host, self.port, self.timeout or 30.0)


class _Via(urllib.request.HTTPHandler):
    """urllib's HTTP (redirects and all) over ``via``'s connections."""

    def __init__(self, via: Connector) -> None:
        super().__init__()
        self.via = via

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_ViaConnection, via=self.via), req)


def _http(host: Any, spec: CheckSpec, ip: str, via: Connector | None = None) -> Outcome:
    port = spec.options.get("port", 80)
    url = f"http://{ip}:{port}{spec.subject}"
    want_status = spec.options.get("status", 200)
    contains = spec.options.get("contains")
    expectation = f"GET {spec.subject} on port {port} answers {want_status}"
    if contains:
        expectation += f" with a body containing {contains!r}"
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]  # no proxy
    if via is not None:
        handlers.append(_Via(via))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=spec.timeout_s) as response:
            status, body = response.status, response.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(1024 * 1024)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Outcome(False, expectation, f"no HTTP answer: {reason}")
    text = body.decode("utf-8", errors="replace")
    ok = status == want_status and (not contains or contains in text)
    observed = f"HTTP {status}, {len(body)} bytes"
    if contains:
        observed += ", text found" if contains in text else ", text not found"
    return Outcome(ok, expectation, observed, "" if ok else _clip(text))


def _file(host: Any, spec: CheckSpec, ip: str) -> Outcome:
    file = host.file(spec.subject)
    want_exists = spec.options.get("exists", True)
    exists = bool(file.exists)
    wanted = ["exists" if want_exists else "is absent"]
    seen = ["exists" if exists else "absent"]
    ok = exists == want_exists
    if exists and (sha := spec.options.get("sha256")):
        actual = file.sha256sum
        wanted.append(f"sha256 {sha}")
        seen.append(f"sha256 {actual}")
        ok = ok and actual == sha
    if exists and (pattern := spec.options.get("contains")):
        # Extended regular expressions, as documented (testinfra's contains() is basic grep).
        found = host.run("grep -qsE -- %s %s", pattern, spec.subject).rc == 0
        wanted.append(f"contains /{pattern}/")
        seen.append("pattern found" if found else "pattern not found")
        ok = ok and found
    return Outcome(ok, f"file {spec.subject} {', '.join(wanted)}", ", ".join(seen))


def _command(host: Any, spec: CheckSpec, ip: str) -> Outcome:
    user = spec.options.get("user")
    result = host.run(as_user(spec.subject, user, _is_root(host)) if user else spec.subject)
    want_rc = spec.options.get("exit_status", 0)
    wanted = [f"exits {want_rc}"]
    seen = [f"exit {result.rc}"]
    ok = result.rc == want_rc
    if pattern := spec.options.get("stdout_matches"):
        found = re.search(pattern, result.stdout, re.MULTILINE) is not None
        wanted.append(f"stdout matches /{pattern}/")
        seen.append("stdout matches" if found else "stdout does not match")
        ok = ok and found
    if text := spec.options.get("stdout_contains"):
        found = text in result.stdout
        wanted.append(f"stdout contains {text!r}")
        seen.append("text found" if found else "text not found")
        ok = ok and found
    output = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
    return Outcome(ok, f"`{spec.subject}` {', '.join(wanted)}", ", ".join(seen), _clip(output))


def _is_root(host: Any) -> bool:
    return bool(host.user().name == "root")


def _package(host: Any, spec: CheckSpec, ip: str) -> Outcome:
    pkg = host.package(spec.subject)
    want = spec.options.get("installed", True)
    installed = bool(pkg.is_installed)
    ok = installed == want
    wanted = f"package {spec.subject} {'installed' if want else 'not installed'}"
    observed = "installed" if installed else "not installed"
    if installed:
        version = pkg.version
        observed += f", version {version}"
        if prefix := spec.options.get("version"):
            wanted += f", version {prefix}*"
            ok = ok and str(version).startswith(prefix)
    return Outcome(ok, wanted, observed)


KINDS: dict[str, Callable[[Any, CheckSpec, str], Outcome]] = {
    "service": _service,
    "port": _port,
    "http": _http,
    "file": _file,
    "command": _command,
    "package": _package,
}


def failed(spec: CheckSpec, observed: str, duration_s: float) -> CheckResult:
    """A check that could not observe what it expects (``observed`` says why)."""
    return CheckResult(spec.name, spec.kind, f"{spec.kind} {spec.subject}", observed, False,
                       duration_s)  # fmt: skip


def timed_out(spec: CheckSpec, duration_s: float) -> CheckResult:
    return failed(spec, f"no answer within {spec.timeout_s:g}s (timed out)", duration_s)


def run_check(host: Any, spec: CheckSpec, ip: str, via: Connector | None = None) -> CheckResult:
    """Run one check within its timeout; every exception becomes a failed result. ``via``
    makes the harness's own connections (an ``http`` check's) where the guest is reachable
    only through its hypervisor host."""
    box: list[Outcome | BaseException] = []

    def work() -> None:
        try:
            if spec.kind == "http":
                box.append(_http(host, spec, ip, via))
            else:
                box.append(KINDS[spec.kind](host, spec, ip))
        except Exception as exc:
            box.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"check:{spec.name}", daemon=True)
    worker.start()
    worker.join(spec.timeout_s)
    duration = time.monotonic() - started
    if not box:
        return timed_out(spec, duration)
    outcome = box[0]
    if isinstance(outcome, BaseException):
        return failed(spec, f"error: {type(outcome).__name__}: {outcome}", duration)
    return CheckResult(
        spec.name,
        spec.kind,
        outcome.expectation,
        outcome.observed,
        outcome.passed,
        duration,
        outcome.output,
    )
