"""The HTTP endpoints of the daemon (CONTRACT.md section 5), on the standard library's threaded server.

``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``, ``/api/v1/status``
(``Authorization: Bearer`` when ``LENSOPS_API_TOKEN`` is set, constant-time
compared, 401 otherwise) and ``POST /hooks/git`` (GitHub's
``X-Hub-Signature-256``, constant-time compared; 401 without a valid
signature, 413 over the size cap, 429 when flooded; a replay, by delivery id
or by the same body within ``REPLAY_WINDOW_SECONDS``, acknowledged once and
never spending the rate limit). The webhook answers at once; the fetch runs
behind it.

Every connection is a thread, so the door is what keeps the probes answering
(issue 15, item 6). The listen backlog is deep enough that a burst of
connections is queued, not dropped. A request must arrive whole (headers and
body) within ``REQUEST_SECONDS`` of the connection's accept or of its first
byte, its headers within ``MAX_HEADER_BYTES``; a kept-alive connection may
wait ``IDLE_SECONDS`` for its next request; an answer must be sent within
``REQUEST_SECONDS``; past a deadline the connection is closed. At most
``MAX_CONNECTIONS`` are open: a new one sheds the connection idle the longest
(no whole request yet), else the oldest, so a new connection is always served
and the threads stay bounded (reaching the cap is an
``http_connection_cap_reached`` warning, once a minute at most). A client
closing or resetting its connection is not an error (a debug line); an error
in a handler is one ``http_handler_failed`` log line, never a traceback on
stderr.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller import logs, metrics
from controller.errors import UsageError

log = logs.get("lensops.http")

MAX_WEBHOOK_BYTES = 1024 * 1024
BODY_CHUNK_BYTES = 16 * 1024
"""A webhook body is read and authenticated this much at a time; it is never held whole."""
WEBHOOK_BURST = 20
WEBHOOK_PER_SECOND = 5.0
MAX_DELIVERIES = 10_000
"""Delivery ids, and body digests, remembered to acknowledge a replay once."""
REPLAY_WINDOW_SECONDS = 600.0
"""The same signed body within this window is a replay, whatever its (unsigned) delivery id."""

REQUEST_SECONDS = 10.0
"""From a connection's accept, or its next request's first byte, to the request's last byte; and to send an answer."""
IDLE_SECONDS = 75.0
"""A kept-alive connection's wait for its next request (above an ALB's 60 s idle timeout, as AWS advises)."""
MAX_CONNECTIONS = 256
"""Open connections (each a thread); a new one over the cap sheds an idle one."""
MAX_HEADER_BYTES = 64 * 1024
"""A request line and headers larger than this (an ALB's own limit) close the connection; the standard
library alone would hold 100 lines of 64 KiB each."""
LISTEN_BACKLOG = 512
"""Connections the kernel queues before accept; the standard library's 5 drops a burst's SYNs (a 1 s, then 3 s, retry)."""
CAP_WARNING_SECONDS = 60.0
"""At most one ``http_connection_cap_reached`` warning this often."""


@dataclass(frozen=True)
class Limits:
    """How long a connection may take and how many may be open (tests shorten them)."""

    request_seconds: float = REQUEST_SECONDS
    idle_seconds: float = IDLE_SECONDS
    max_connections: int = MAX_CONNECTIONS


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


class _Recent:
    """Keys seen lately, oldest first: at most ``limit``, each kept ``window`` seconds (``None``: until pushed out).

    Not locked: the server holds its lock around every use."""

    def __init__(self, limit: int, window: float | None = None):
        self.limit, self.window = limit, window
        self.keys: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        if self.window is not None:
            horizon = time.monotonic() - self.window
            while self.keys and next(iter(self.keys.values())) < horizon:
                self.keys.popitem(last=False)
        return key in self.keys

    def add(self, key: str) -> None:
        self.keys[key] = time.monotonic()
        while len(self.keys) > self.limit:
            self.keys.popitem(last=False)


class _Connection:
    """One accepted socket: the deadline its next read must meet, and whether it may be shed."""

    def __init__(self, sock: socket.socket, limits: Limits, lock: threading.Lock):
        self.sock, self.limits, self.lock = sock, limits, lock
        self.idle_since = time.monotonic()
        self.deadline = self.idle_since + limits.request_seconds
        self.waiting = False
        """Kept alive, before the first byte of its next request (``idle_seconds`` to come)."""
        self.answering = False
        """A whole request received, its answer being made: not shed while another is idle."""
        self.shed = False
        self.ended = False
        """The client closed its side: whatever request was being read is cut short."""
        self.head_bytes: int | None = 0
        """Bytes read of the request line and headers so far (``None`` once they are whole)."""
        self.request = ""
        """The method and path being answered, for the error log."""

    def next_request(self) -> None:
        """Between two requests of a kept-alive connection: idle again, for at most ``idle_seconds``."""
        with self.lock:
            if self.answering:
                self.answering, self.waiting, self.head_bytes = False, True, 0
                self.idle_since = time.monotonic()
                self.deadline = self.idle_since + self.limits.idle_seconds

    def received(self, request: str) -> None:
        """The request is whole (headers and body): answer it within ``request_seconds``."""
        with self.lock:
            self.answering, self.request = True, request
        self.sock.settimeout(self.limits.request_seconds)

    def recv_into(self, buffer: memoryview) -> int:
        """``socket.recv_into`` that fails past the deadline (``TimeoutError``) or once shed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(remaining)
        received = self.sock.recv_into(buffer)
        if not received:
            if self.shed:
                raise ConnectionAbortedError("connection shed over the connection cap")
            self.ended = True
        if self.head_bytes is not None:
            self.head_bytes += received
            if self.head_bytes > MAX_HEADER_BYTES + io.DEFAULT_BUFFER_SIZE:  # the reader reads ahead a buffer at most
                raise ConnectionAbortedError("request headers over MAX_HEADER_BYTES")
        if received and self.waiting:
            with self.lock:
                self.waiting = False
                self.deadline = time.monotonic() + self.limits.request_seconds
        return received

    def drop(self) -> None:
        """Shed: the handler's blocked read returns at once and the thread ends."""
        self.shed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the client


class _DeadlineReader(io.RawIOBase):
    """The handler's raw input: reads that keep the connection's deadline."""

    def __init__(self, connection: _Connection):
        self.connection = connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # io's signature: a writable buffer
        return self.connection.recv_into(memoryview(buffer).cast("B"))


class _Connections:
    """The open connections, at most ``limits.max_connections`` not shed."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.lock = threading.Lock()
        self.by_socket: dict[socket.socket, _Connection] = {}
        self.shed = 0
        self.warned = -CAP_WARNING_SECONDS

    def open(self, sock: socket.socket) -> None:
        """Register an accepted socket, shedding the longest-idle connection (else the oldest) when at the cap."""
        with self.lock:
            live = [c for c in self.by_socket.values() if not c.shed]
            over = len(live) + 1 - self.limits.max_connections
            if over > 0:
                live.sort(key=lambda c: (c.answering, c.idle_since))
                for victim in live[:over]:
                    victim.drop()
                self.shed += over
            self.by_socket[sock] = _Connection(sock, self.limits, self.lock)
            now = time.monotonic()
            warn = over > 0 and now - self.warned >= CAP_WARNING_SECONDS
            if warn:
                self.warned = now
        if warn:  # a flood of idle connections, or far too many clients: once a minute at most
            log.warning("http_connection_cap_reached", cap=self.limits.max_connections, shed_total=self.shed)

    def get(self, sock: socket.socket) -> _Connection:
        with self.lock:
            found = self.by_socket.get(sock)
        if found is None:  # not registered: treat as shed
            found = _Connection(sock, self.limits, self.lock)
            found.shed = True
        return found

    def close(self, sock: socket.socket) -> None:
        with self.lock:
            self.by_socket.pop(sock, None)

    def drop_all(self) -> None:
        with self.lock:
            for connection in self.by_socket.values():
                connection.drop()


class _HTTPServer(ThreadingHTTPServer):
    """The standard library's threaded server with a connection cap, a deep backlog and quiet client errors."""

    daemon_threads = True
    block_on_close = False  # stopping never waits for a client
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: Callable[..., BaseHTTPRequestHandler], connections: _Connections):
        self.connections = connections
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:  # socketserver's signature
        self.connections.open(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:  # socketserver's signature
        self.connections.close(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:  # socketserver's signature
        """A client gone or too slow is routine (a debug line); anything else is one error line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("http_connection_dropped", error=type(error).__name__)
            return
        request_line = self.connections.get(request).request if isinstance(request, socket.socket) else ""
        frames = traceback.extract_tb(error.__traceback__) if error is not None else []
        where = f"{frames[-1].filename.rpartition('/')[2]}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
        log.error("http_handler_failed", request=request_line[:200], error=type(error).__name__, message=str(error)[:500], where=where)


class Server:
    """A threaded HTTP server bound to ``host:port`` serving one backend."""

    def __init__(
        self,
        host: str,
        port: int,
        backend: Backend,
        webhook_secret: str | None,
        api_token: str | None = None,
        limits: Limits | None = None,
    ):
        self.backend = backend
        self.secret = webhook_secret.encode() if webhook_secret else None
        self.token = api_token.encode() if api_token else None
        self.bucket = _Bucket(WEBHOOK_BURST, WEBHOOK_PER_SECOND)
        self.deliveries = _Recent(MAX_DELIVERIES)
        self.bodies = _Recent(MAX_DELIVERIES, REPLAY_WINDOW_SECONDS)
        self.lock = threading.Lock()
        self.connections = _Connections(limits or Limits())
        try:
            self.httpd = _HTTPServer((host, port), _make_handler(self), self.connections)
        except OSError as exc:  # the port is taken (another daemon, the demo twice) or not ours to take
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; set LENSOPS_HTTP_ADDR to a free address, for example 127.0.0.1:8081") from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="lensops-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.connections.drop_all()
        self.httpd.server_close()

    def replayed(self, delivery: str, digest: str) -> bool:
        """True when this delivery id, or this body within the replay window, was already accepted."""
        with self.lock:
            return self._seen(delivery, digest)

    def accept_delivery(self, delivery: str, digest: str) -> bool:
        """Record a signed delivery; False when it is a replay (one accepted meanwhile, in another thread)."""
        with self.lock:
            if self._seen(delivery, digest):
                return False
            self.bodies.add(digest)
            if delivery:
                self.deliveries.add(delivery)
            return True

    def _seen(self, delivery: str, digest: str) -> bool:
        return digest in self.bodies or (bool(delivery) and delivery in self.deliveries)

    def read_body(self, stream: Any, length: int) -> tuple[str, str] | None:
        """The body's HMAC (with the webhook secret) and SHA-256, read in chunks and never held:
        256 connections sending a megabyte each cost no memory. None when the body was cut short."""
        assert self.secret is not None
        mac, sha = hmac.new(self.secret, digestmod=hashlib.sha256), hashlib.sha256()
        while length > 0:
            chunk = stream.read(min(length, BODY_CHUNK_BYTES))
            if not chunk:
                return None
            mac.update(chunk)
            sha.update(chunk)
            length -= len(chunk)
        return "sha256=" + mac.hexdigest(), sha.hexdigest()

    @staticmethod
    def signature_ok(expected: str, header: str) -> bool:
        """``header`` is GitHub's ``X-Hub-Signature-256`` for the body whose HMAC is ``expected``."""
        return header.startswith("sha256=") and hmac.compare_digest(expected.encode(), header.encode())

    def token_ok(self, header: str) -> bool:
        """True without a token set, or with ``Authorization: Bearer <token>`` (constant-time compared)."""
        if self.token is None:
            return True
        scheme, _, given = header.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(self.token, given.strip().encode())


def _make_handler(server: Server) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lensops"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
            return

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the standard library's reader, replaced by one that keeps the deadlines
            self.connection_state = server.connections.get(self.request)
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection_state))

        def handle_one_request(self) -> None:
            self.connection_state.next_request()
            super().handle_one_request()

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            self.connection_state.head_bytes = None
            if parsed and self.connection_state.ended:  # the headers were cut short: nothing to answer
                self.close_connection = True
                return False
            if parsed and self.command != "POST":  # a POST is whole once its body is read (do_POST)
                self._received()
            return parsed

        def _received(self) -> None:
            self.connection_state.received(f"{self.command} {self.path.split('?', 1)[0]}")

        def _send(self, code: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(code, json.dumps(data, default=str).encode(), headers=headers)

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
                if server.token_ok(self.headers.get("Authorization", "")):
                    self._json(200, server.backend.status())
                else:  # nothing of the status in the answer
                    self._json(401, {"error": "Authorization: Bearer <LENSOPS_API_TOKEN> required"}, {"WWW-Authenticate": 'Bearer realm="lensops"'})
            else:
                self._json(404, {"error": "not found"})

        def _unread(self, code: int, data: Any) -> None:
            """Answer a POST without reading its body, and close: the body is never taken for the next request."""
            self._received()
            self.close_connection = True
            self._json(code, data)

        def do_POST(self) -> None:  # stdlib name
            path = self.path.split("?", 1)[0]
            if path != "/hooks/git":
                self._unread(404, {"error": "not found"})
                return
            if server.secret is None:
                self._unread(404, {"error": "webhook disabled: LENSOPS_WEBHOOK_SECRET is not set"})
                return
            raw_length = (self.headers.get("Content-Length") or "0").strip()
            if not raw_length.isascii() or not raw_length.isdigit():
                # A negative length would read until the connection closes; answered unread.
                self._unread(400, {"error": "Content-Length must be a number of bytes"})
                return
            length = int(raw_length)
            if length > MAX_WEBHOOK_BYTES:
                self._unread(413, {"error": f"body over {MAX_WEBHOOK_BYTES} bytes"})
                return
            read = server.read_body(self.rfile, length)  # within the connection's deadline
            if read is None:  # the client went away mid-body: nothing to answer
                self.close_connection = True
                return
            signature, digest = read
            self._received()
            if not server.signature_ok(signature, self.headers.get("X-Hub-Signature-256", "")):
                log.warning("webhook_rejected", reason="bad or missing signature")
                self._json(401, {"error": "bad or missing X-Hub-Signature-256"})
                return
            # Replays are told apart before the rate limit (a replayed delivery never spends it) and
            # recorded after it (a delivery refused 429 may come again). The delivery id is not
            # signed, so the body's digest is the replay's mark; only signed bodies are recorded.
            delivery = self.headers.get("X-GitHub-Delivery", "")
            replay = server.replayed(delivery, digest)
            # Only signed deliveries spend the rate limit: a flood of unsigned ones cannot starve them.
            if not replay and not server.bucket.take():
                self.close_connection = True
                self._json(429, {"error": "too many webhook deliveries"})
                return
            if replay or not server.accept_delivery(delivery, digest):
                self._json(200, {"accepted": False, "reason": "delivery already seen"})
                return
            event = self.headers.get("X-GitHub-Event", "push")
            if event == "ping":
                self._json(200, {"accepted": False, "reason": "ping"})
                return
            server.backend.trigger_fetch("webhook")
            self._json(202, {"accepted": True})

    return Handler
