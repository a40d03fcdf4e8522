"""The HTTP endpoints of the daemon (CONTRACT.md section 5).

``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``, ``/api/v1/status``
and ``POST /hooks/git`` (GitHub's ``X-Hub-Signature-256``, constant-time
compared; 401 without a valid signature, 413 over the size cap, 429 when
flooded, a replayed delivery id acknowledged once). The webhook answers at
once; the fetch runs behind it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller import logs, metrics

log = logs.get("lensops.http")

MAX_WEBHOOK_BYTES = 1024 * 1024
WEBHOOK_BURST = 20
WEBHOOK_PER_SECOND = 5.0


class Backend(Protocol):
    """What the HTTP server asks of the daemon."""

    def alive(self) -> bool: ...

    def ready(self) -> tuple[bool, str]: ...

    def status(self) -> dict[str, Any]: ...

    def trigger_fetch(self, reason: str) -> None: ...


class _Bucket:
    """A token bucket: ``WEBHOOK_BURST`` at once, refilled at ``WEBHOOK_PER_SECOND``."""

    def __init__(self, burst: int, rate: float):
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class Server:
    """A threaded HTTP server bound to ``host:port`` serving one backend."""

    def __init__(self, host: str, port: int, backend: Backend, webhook_secret: str | None):
        self.backend = backend
        self.secret = webhook_secret.encode() if webhook_secret else None
        self.bucket = _Bucket(WEBHOOK_BURST, WEBHOOK_PER_SECOND)
        self.deliveries: OrderedDict[str, float] = OrderedDict()
        self.lock = threading.Lock()
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="lensops-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def seen_delivery(self, delivery: str) -> bool:
        """True when this delivery id was already accepted (a replay)."""
        if not delivery:
            return False
        with self.lock:
            if delivery in self.deliveries:
                return True
            self.deliveries[delivery] = time.time()
            while len(self.deliveries) > 10_000:
                self.deliveries.popitem(last=False)
            return False

    def signature_ok(self, body: bytes, header: str) -> bool:
        if self.secret is None or not header.startswith("sha256="):
            return False
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), header.encode())


def _make_handler(server: Server) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lensops"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
            return

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, default=str).encode())

        def do_GET(self) -> None:  # stdlib name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive = server.backend.alive()
                self._json(200 if alive else 503, {"alive": alive})
            elif path == "/readyz":
                ready, reason = server.backend.ready()
                self._json(200 if ready else 503, {"ready": ready, "reason": reason})
            elif path == "/api/v1/status":
                self._json(200, server.backend.status())
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # stdlib name
            path = self.path.split("?", 1)[0]
            if path != "/hooks/git":
                self._json(404, {"error": "not found"})
                return
            if server.secret is None:
                self._json(404, {"error": "webhook disabled: LENSOPS_WEBHOOK_SECRET is not set"})
                return
            raw_length = (self.headers.get("Content-Length") or "0").strip()
            if not raw_length.isascii() or not raw_length.isdigit():
                # A negative length would read until the connection closes; answered unread.
                self.close_connection = True
                self._json(400, {"error": "Content-Length must be a number of bytes"})
                return
            length = int(raw_length)
            if length > MAX_WEBHOOK_BYTES:
                self.close_connection = True
                self._json(413, {"error": f"body over {MAX_WEBHOOK_BYTES} bytes"})
                return
            body = self.rfile.read(length) if length else b""
            if not server.signature_ok(body, self.headers.get("X-Hub-Signature-256", "")):
                log.warning("webhook_rejected", reason="bad or missing signature")
                self._json(401, {"error": "bad or missing X-Hub-Signature-256"})
                return
            # Only signed deliveries spend the rate limit: a flood of unsigned ones cannot starve them.
            if not server.bucket.take():
                self.close_connection = True
                self._json(429, {"error": "too many webhook deliveries"})
                return
            delivery = self.headers.get("X-GitHub-Delivery", "")
            if server.seen_delivery(delivery):
                self._json(200, {"accepted": False, "reason": "delivery already seen"})
                return
            event = self.headers.get("X-GitHub-Event", "push")
            if event == "ping":
                self._json(200, {"accepted": False, "reason": "ping"})
                return
            server.backend.trigger_fetch("webhook")
            self._json(202, {"accepted": True})

    return Handler
