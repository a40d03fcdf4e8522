"""The webhook's door, on a real port with a stand-in daemon: a length that is not a number of
bytes is answered 400 unread, and unsigned deliveries never spend the signed ones' rate limit."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from controller.server import WEBHOOK_BURST, Server

SECRET = "s3cret"


class _Daemon:
    def __init__(self) -> None:
        self.fetches = 0

    def alive(self) -> bool:
        return True

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def status(self) -> dict[str, Any]:
        return {}

    def trigger_fetch(self, reason: str) -> None:
        self.fetches += 1


@pytest.fixture
def served() -> Iterator[tuple[Server, _Daemon]]:
    daemon = _Daemon()
    server = Server("127.0.0.1", 0, daemon, SECRET)
    server.start()
    yield server, daemon
    server.stop()


def _raw(server: Server, length: str) -> bytes:
    """A POST with ``Content-Length: <length>`` and no body; the whole answer, read until the server closes."""
    host, port = server.address
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(f"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("length", ["-1", "-400000000", "abc", "1e6", "١٢"])
def test_a_length_that_is_not_a_number_of_bytes_is_refused_unread(served, length):
    server, daemon = served
    answer = _raw(server, length)  # returns only because the server answered and closed
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert daemon.fetches == 0


def _post(server: Server, body: bytes, secret: str | None) -> int:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    conn.request("POST", "/hooks/git", body=body, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_unsigned_deliveries_do_not_spend_the_rate_limit(served):
    server, daemon = served
    body = b'{"ref": "refs/heads/main"}'
    assert [_post(server, body, None) for _ in range(WEBHOOK_BURST * 3)] == [401] * (WEBHOOK_BURST * 3)
    assert _post(server, body, "wrong") == 401
    assert _post(server, body, SECRET) == 202
    assert daemon.fetches == 1
