"""An SMTP server (aiosmtpd) on a free port that keeps every message it accepts, for the
email receiver tests: `smtp_sink` is the fixture, `SmtpSink.wait_for(n)` polls for mail.

Messages are parsed with the standard library's `email` package (modern policy), so tests
read decoded headers and the decoded text and HTML parts, whatever transfer encoding the
sender chose.
"""

from __future__ import annotations

import email
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from helpers import free_port, wait_until


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    received_at: float

    @property
    def text(self) -> str:
        """The decoded text/plain part ("" when there is none)."""
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        """The decoded text/html part ("" when there is none)."""
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


class SmtpSink:
    """aiosmtpd's threaded controller with a handler that records every DATA."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=policy.default)
        mail = Mail(envelope.mail_from, list(envelope.rcpt_tos), msg, raw, time.time())
        with self._lock:
            self._mails.append(mail)
        return "250 Message accepted for delivery"

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def wait_for(self, n: int = 1, timeout: float = 20.0) -> list[Mail]:
        return wait_until(
            lambda: self.mails if len(self.mails) >= n else None,
            timeout=timeout,
            what=f"{n} mail(s) at the SMTP sink (got {len(self.mails)})",
        )

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_sink():
    sink = SmtpSink()
    yield sink
    sink.close()
