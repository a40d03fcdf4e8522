"""Start and stop the embedded AWS emulator: moto in server mode behind our gateway, over real HTTP.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto keeps its state in process-wide
backends, so every emulator of one process serves the same AWS state; fault
plans and request counts are each emulator's own.

The server speaks HTTP/1.1 with keep-alive, so a boto3 client reuses its
pooled connections as it does against AWS, instead of connecting (and the
server starting a thread) for every call: werkzeug's own handler closes every
connection after one answer.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import urllib.request
from typing import Any, cast

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.debug.tbtools import DebugTraceback
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer

from .dispatch import MotoApplication, cache_method_names
from .faults import FaultPlan
from .gateway import Gateway
from .quotas import Quotas
from .dynamodb import make_writes_atomic

log = logging.getLogger(__name__)

# Without Docker, moto's Lambda "runs" functions in-process instead of pulling images.
_MOTO_CONFIG = {"lambda": {"use_docker": False}}


# Answers that carry no body whatever their headers say (RFC 9110 6.4.1).
_BODYLESS_STATUSES = frozenset({204, 304})


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, knowing its open connections so that it can close idle ones."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        super().__init__(host, port, app, handler=_RequestHandler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def opened(self, connection: socket.socket) -> None:
        """Remember ``connection`` until ``closed``."""
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        """Forget ``connection``: its handler is done with it."""
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection down: handlers waiting for a next request see its end and return."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client or its handler


class _RequestHandler(MotoRequestHandler):
    """moto's request handler, answering over HTTP/1.1 keep-alive connections.

    werkzeug's ``run_wsgi`` always answers ``Connection: close``, since it
    cannot tell where an unread request body ends. This one reads each
    request's body whole before the application runs, and sends each answer
    whole with its Content-Length, so the next request on the connection
    starts cleanly. The connection closes after an error, a dropped
    connection (the ``reset`` fault), a client asking for it, or an answer
    whose Content-Length is not its body's length.
    """

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle's algorithm
    # holds the body back until the client's delayed ACK of the headers.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_Server, self.server).closed(self.connection)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug logs every request at INFO; tests and the demo make thousands.
        log.debug("%s %s", self.requestline, code)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return body.append

        body: list[bytes] = []
        try:
            environ["wsgi.input"] = io.BytesIO(self._read_body(environ))
            iterable = self.server.app(environ, start_response)
            try:
                body.extend(iterable)
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
        except (ConnectionError, TimeoutError):
            # The client went away, or the gateway dropped the connection on purpose.
            self.close_connection = True
            return
        except Exception as error:
            if self.server.passthrough_errors:
                raise
            self.server.log("error", f"Error on request:\n{DebugTraceback(error).render_traceback_text()}")
            self.close_connection = True
            body.clear()
            body.extend(InternalServerError()(environ, start_response))
        self._send(answer[0], answer[1], b"".join(body))

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        """The whole request body; a body of unknown length closes the connection after the answer."""
        if environ.get("wsgi.input_terminated"):
            return bytes(environ["wsgi.input"].read())  # chunked: werkzeug's DechunkedInput ends with it
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return b""
        return bytes(self.rfile.read(length)) if length else b""

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        length: str | None = None
        for name, value in headers:
            if name.lower() == "content-length":
                length = value.strip()
            self.send_header(name, value)
        has_body = self.command != "HEAD" and code >= 200 and code not in _BODYLESS_STATUSES
        if has_body and length is None:
            self.send_header("Content-Length", str(len(body)))
        elif has_body and length != str(len(body)):
            self.close_connection = True  # the client cannot find where this answer ends
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body and body:
            self.wfile.write(body)


class Emulator:
    """A running emulator: point boto3 clients at ``url``."""

    def __init__(self, server: _Server, gateway: Gateway, thread: threading.Thread) -> None:
        self._server = server
        self._gateway = gateway
        self._thread = thread
        self.url: str = _url(server.host, server.port)

    def reset(self) -> None:
        """Wipe all AWS state, the fault plan, the quotas and the request counts.

        moto's ``/moto-api/reset`` wipes moto's backends, which hold our
        additions' state too; moto's Lambda configuration is then set again.
        """
        self._post("/moto-api/reset", {})
        self._post("/moto-api/config", _MOTO_CONFIG)
        self._gateway.set_faults(None)
        self._gateway.set_quotas(None)
        self._gateway.clear_requests()

    def stop(self) -> None:
        """Stop serving, close the connections clients keep open, and release the port."""
        self._server.shutdown()
        self._thread.join()
        self._server.close_connections()
        self._server.server_close()

    def set_faults(self, faults: FaultPlan | None) -> None:
        """Inject faults as ``faults`` says from the next request on; None = no faults."""
        self._gateway.set_faults(faults)

    def set_quotas(self, quotas: Quotas | None) -> None:
        """Throttle AWS requests over ``quotas``' rates, and delay every one by its latency,
        from the next request on, every bucket full; None = no quotas, no latency (the default).

        ``emulator.set_quotas(Quotas.aws(scale=10, latency_ms=30))``: AWS's documented
        default rates, raised tenfold, 30 ms a call.
        """
        self._gateway.set_quotas(quotas)

    def requests(self) -> dict[tuple[str, str], int]:
        """AWS requests seen since the last clear or reset, per (service, operation).

        Services are boto3 client names (``cloudwatch``), operations API names
        (``PutMetricAlarm``); a retried call counts once per attempt, and a throttled
        one counts too.
        """
        return self._gateway.requests()

    def throttled(self) -> dict[tuple[str, str], int]:
        """AWS requests answered with a throttling error because they went over their quota,
        since the last clear or reset, per (service, operation) (the fault plan's throttles are not counted here)."""
        return self._gateway.throttled()

    def clear_requests(self) -> None:
        """Forget the requests and throttled requests counted so far, and the peak of those in flight."""
        self._gateway.clear_requests()

    def peak_in_flight(self) -> int:
        """The most AWS requests being answered at once since the last clear or reset."""
        return self._gateway.peak_in_flight()

    def _post(self, path: str, payload: dict[str, object]) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def start(host: str = "127.0.0.1", port: int = 0) -> Emulator:
    """Serve a new emulator on ``host``:``port`` (0: a free port); returns once it answers."""
    make_writes_atomic()
    cache_method_names()
    gateway = Gateway(MotoApplication())
    server = _Server(host, port, gateway)
    thread = threading.Thread(target=server.serve_forever, name="lensops-aws-emulator", daemon=True)
    thread.start()
    emulator = Emulator(server, gateway, thread)
    emulator._post("/moto-api/config", _MOTO_CONFIG)
    log.info("AWS emulator serving on %s", emulator.url)
    return emulator


def _url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
