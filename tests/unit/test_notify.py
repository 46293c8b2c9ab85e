"""Notifications against real local servers: an SMTP server (aiosmtpd) that demands a login,
an HTTP server taking the webhook, and the Prometheus textfile read back with the official
parser. Credentials come from the environment and a file and must appear in no output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from prometheus_client.parser import text_string_to_metric_families

from harness.finished import Finished
from harness.notify import load_notify
from tests.unit.test_operations import scenario

PASSWORD = "smtp-pa55word-from-env"
TOKEN = "webhook-t0ken-from-file"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or b""))
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:  # fmt: skip
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == PASSWORD.encode())


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False)  # fmt: skip
    controller.start()
    yield box, port
    controller.stop()


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((dict(self.headers), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[list[tuple[dict[str, str], Any]], int]]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Hook.received, server.server_address[1]
    server.shutdown()
    server.server_close()


def config(folder: Path, smtp_port: int, hook_url: str, when: str = "failures") -> Path:
    (folder / "hook.token").write_text(TOKEN + "\n")
    path = folder / "notify.yaml"
    path.write_text(f"""\
email:
  when: {when}
  host: 127.0.0.1
  port: {smtp_port}
  security: none
  username: drills
  password_env: DRILL_SMTP_PASSWORD
  from: restore-drill@example.test
  to: [ops@example.test, audit@example.test]
webhook:
  url: {hook_url}
  token_file: hook.token
  timeout: 5s
prometheus:
  textfile: {folder}/metrics/restore_drill.prom
""")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--connect", "test:///default", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DRILL_SMTP_PASSWORD": PASSWORD, **(env or {})},
    )  # fmt: skip


def test_failed_drill_is_mailed_posted_and_exported(
    scenario_dir: Path, tmp_path: Path, smtp: tuple[Mailbox, int],
    webhook: tuple[list[tuple[dict[str, str], Any]], int],
) -> None:  # fmt: skip
    box, smtp_port = smtp
    posts, hook_port = webhook
    conf = config(tmp_path, smtp_port, f"http://127.0.0.1:{hook_port}/drills")
    reports = tmp_path / "r"
    proc = run("--reports", str(reports), "--notify", str(conf),
               str(scenario(scenario_dir, "notified", damaged=True)))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "notify:" not in proc.stderr  # every channel delivered

    [mail] = box.messages
    assert box.logins == [(b"drills", PASSWORD.encode())]
    assert mail["Subject"] == "[restore-drill] 1 of 1 drill(s) not verified: notified FAIL"
    assert mail["To"] == "ops@example.test, audit@example.test"
    body = mail.get_payload(decode=True).decode()
    assert "FAIL     notified: verify:" in body
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    assert f"evidence: {folder / 'report.html'}" in body

    [(headers, payload)] = posts
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert payload["ok"] is False
    assert payload["exit_code"] == 1
    [drill] = payload["drills"]
    assert drill["scenario"] == "notified"
    assert drill["verdict"] == "FAIL"
    assert drill["run_id"] == folder.name
    assert drill["rto"]["target_s"] == 900

    text = (tmp_path / "metrics" / "restore_drill.prom").read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    label = (("scenario", "notified"),)
    assert samples[("restore_drill_verdict", (("restore_drill_verdict", "FAIL"), *label))] == 1
    assert samples[("restore_drill_verdict", (("restore_drill_verdict", "PASS"), *label))] == 0
    assert samples[("restore_drill_rto_target_seconds", label)] == 900
    assert samples[("restore_drill_last_run_timestamp_seconds", label)] > 1.7e9
    # Never verified: 0 (the epoch), so `time() - last_verified > N` alerts on it at once.
    assert samples[("restore_drill_last_verified_timestamp_seconds", label)] == 0

    outputs = [proc.stderr, proc.stdout, text, json.dumps(payload), str(mail)]
    outputs += [p.read_text() for p in reports.rglob("*") if p.is_file()]
    for secret in (PASSWORD, TOKEN):
        assert not any(secret in out for out in outputs), "a credential leaked"


def test_unreachable_webhook_is_logged_and_never_changes_the_verdict(
    scenario_dir: Path, tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    conf = config(tmp_path, smtp[1], f"http://127.0.0.1:{free_port()}/nobody-listens")
    proc = run("--reports", str(tmp_path / "r"), "--notify", str(conf),
               str(scenario(scenario_dir, "hookless", damaged=True)))  # fmt: skip
    assert proc.returncode == 1  # the drill's verdict, not a notification problem
    assert "notify: webhook failed after 3 attempts: " in proc.stderr
    assert "Connection refused" in proc.stderr
    assert len(smtp[0].messages) == 1  # the other channels still delivered


def test_a_pass_is_mailed_only_when_asked(tmp_path: Path, smtp: tuple[Mailbox, int]) -> None:
    passed = [Finished("quiet", "PASS", 0, "restore verified")]
    box, port = smtp
    for when, expected in (("failures", 0), ("always", 1)):
        conf = config(tmp_path, port, "http://127.0.0.1:9/unused", when)
        text = conf.read_text().replace("webhook:\n  url", "webhook:\n  when: failures\n  url")
        conf.write_text(text)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DRILL_SMTP_PASSWORD", PASSWORD)
            problems = load_notify(conf).send(passed, tmp_path / "r")
        assert problems == []
        assert len(box.messages) == expected
    assert box.messages[0]["Subject"] == "[restore-drill] PASS: 1 restore(s) verified"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("  port:", "  prot:"),
         "notify.yaml:4: email.prot: unknown key 'prot' (did you mean 'port'?)"),
        (("security: none", "security: ssl"),
         "notify.yaml:5: email.security: must be one of 'starttls'"),
        (("password_env: DRILL_SMTP_PASSWORD", "password_env: NOT_SET_ANYWHERE"),
         "notify.yaml:7: email.password_env: environment variable NOT_SET_ANYWHERE is not set"),
        (("token_file: hook.token", "token_file: missing.token"),
         "notify.yaml:12: webhook.token_file: cannot read"),
        (("restore_drill.prom", "restore_drill.txt"), "notify.yaml:15: prometheus.textfile:"),
    ],
)  # fmt: skip
def test_bad_notify_config_exits_2_naming_line_and_field_before_any_drill(
    scenario_dir: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    conf = config(tmp_path, 25, "http://127.0.0.1:9/x")
    conf.write_text(conf.read_text().replace(*edit))
    reports = tmp_path / "r"
    proc = run(
        "--reports", str(reports), "--notify", str(conf), str(scenario_dir / "scenario.yaml")
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not reports.exists()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, as a mail relay inside a company would have."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "relay.crt", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_default_starttls_with_login_and_certificate_check(
    scenario_dir: Path, tmp_path: Path
) -> None:
    """The default `security: starttls`: the password only ever crosses TLS, and the relay's
    certificate is verified (trusted here through SSL_CERT_FILE, as an internal CA would be)."""
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=box.authenticate,
                            auth_required=True)  # fmt: skip
    controller.start()
    try:
        conf = tmp_path / "notify.yaml"
        conf.write_text(f"email:\n  host: 127.0.0.1\n  port: {port}\n  username: drills\n"
                        "  password_env: DRILL_SMTP_PASSWORD\n  from: d@example.test\n"
                        "  to: [ops@example.test]\n")  # fmt: skip
        path = str(scenario(scenario_dir, "tls-mail", damaged=True))
        trusted = run("--reports", str(tmp_path / "r"), "--notify", str(conf), path,
                      env={"SSL_CERT_FILE": str(cert)})  # fmt: skip
        assert trusted.returncode == 1, trusted.stderr
        assert "notify:" not in trusted.stderr
        assert len(box.messages) == 1
        assert box.logins == [(b"drills", PASSWORD.encode())]
        untrusted = run("--reports", str(tmp_path / "r2"), "--notify", str(conf), path)
        assert "notify: email to ops@example.test failed after 3 attempts: " in untrusted.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        assert len(box.messages) == 1  # nothing sent to a relay that could not be verified
    finally:
        controller.stop()


def test_a_yaml_bomb_in_the_notify_config_is_refused_at_once(tmp_path: Path) -> None:
    from harness.errors import ScenarioError
    from harness.notify.config import load_config

    bomb = (Path(__file__).parents[1] / "data" / "bad" / "yaml-billion-laughs.yaml").read_text()
    path = tmp_path / "notify.yaml"
    path.write_text(bomb.split("name: bad-case\n", 1)[1])
    with pytest.raises(ScenarioError, match="billion laughs"):
        load_config(path)
