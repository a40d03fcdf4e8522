"""The webhook's door, on a real port with a stand-in daemon: a length that is not a number of
bytes is answered 400 unread, unsigned deliveries never spend the signed ones' rate limit, and a
signed body replayed (with the same, another or no delivery id) is acknowledged once and acted on
once (issue 15, item 10)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket

import pytest

from conftest import StandIn
from controller import server as server_module
from controller.server import WEBHOOK_BURST, Server
from daemon_helpers import wait_for

SECRET = "s3cret"


@pytest.fixture
def served(http_server) -> tuple[Server, StandIn]:
    server, stand_in = http_server(SECRET)
    return server, stand_in


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


def _deliver(server: Server, body: bytes, secret: str | None, delivery: str = "") -> tuple[int, dict[str, object]]:
    """POST ``body`` to /hooks/git, signed with ``secret`` (None: unsigned); the status and the JSON answer."""
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    conn.request("POST", "/hooks/git", body=body, headers=headers)
    answer = conn.getresponse()
    status, data = answer.status, json.loads(answer.read())
    conn.close()
    return status, data


def _post(server: Server, body: bytes, secret: str | None, delivery: str = "") -> int:
    return _deliver(server, body, secret, delivery)[0]


def test_unsigned_deliveries_do_not_spend_the_rate_limit(served):
    server, daemon = served
    body = b'{"ref": "refs/heads/main"}'
    assert [_post(server, body, None) for _ in range(WEBHOOK_BURST * 3)] == [401] * (WEBHOOK_BURST * 3)
    assert _post(server, body, "wrong") == 401
    assert _post(server, body, SECRET) == 202
    assert daemon.fetches == 1


SEEN = {"accepted": False, "reason": "delivery already seen"}


def test_a_replayed_body_is_acknowledged_once_whatever_its_delivery_id(served):
    """The delivery id is not signed: a replay may carry a new one, or none. The signed body is the mark."""
    server, daemon = served
    body = b'{"ref": "refs/heads/main", "after": "1111111"}'
    assert _post(server, body, SECRET, delivery="d-1") == 202
    assert _deliver(server, body, SECRET, delivery="d-1") == (200, SEEN)
    assert _deliver(server, body, SECRET, delivery="d-2") == (200, SEEN)
    assert _deliver(server, body, SECRET) == (200, SEEN)
    assert daemon.fetches == 1
    # another push is another body: acted on
    assert _post(server, b'{"ref": "refs/heads/main", "after": "2222222"}', SECRET, delivery="d-3") == 202
    assert daemon.fetches == 2


def test_an_unsigned_or_missigned_body_never_poisons_the_dedupe(served):
    server, daemon = served
    body = b'{"ref": "refs/heads/main", "after": "3333333"}'
    assert _post(server, body, None, delivery="d-1") == 401
    assert _post(server, body, "wrong", delivery="d-1") == 401
    assert _deliver(server, body, SECRET, delivery="d-1") == (202, {"accepted": True})
    assert daemon.fetches == 1


def test_replays_never_spend_the_rate_limit(served):
    """A captured signed delivery replayed in a loop cannot starve the next real push with 429s."""
    server, daemon = served
    body = b'{"ref": "refs/heads/main", "after": "4444444"}'
    assert _post(server, body, SECRET, delivery="d-1") == 202
    replays = [_post(server, body, SECRET, delivery=f"r-{i}") for i in range(WEBHOOK_BURST * 3)]
    assert replays == [200] * (WEBHOOK_BURST * 3)
    assert _post(server, b'{"ref": "refs/heads/main", "after": "5555555"}', SECRET, delivery="d-2") == 202
    assert daemon.fetches == 2


def test_the_same_body_is_acted_on_again_after_the_replay_window(http_server, monkeypatch):
    monkeypatch.setattr(server_module, "REPLAY_WINDOW_SECONDS", 0.5)
    server, daemon = http_server(SECRET)
    body = b'{"ref": "refs/heads/main", "after": "6666666"}'
    assert _post(server, body, SECRET) == 202
    assert _post(server, body, SECRET) == 200
    wait_for(lambda: _post(server, body, SECRET) == 202, timeout=30, what="the same body accepted once the window has passed")
    assert daemon.fetches == 2
