"""Start and stop the embedded AWS emulator: moto in server mode behind our gateway, over real HTTP.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto keeps its state in process-wide
backends, so every emulator of one process serves the same AWS state; fault
plans and request counts are each emulator's own.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from .faults import FaultPlan
from .gateway import Gateway
from .dynamodb import make_writes_atomic

log = logging.getLogger(__name__)

# Without Docker, moto's Lambda "runs" functions in-process instead of pulling images.
_MOTO_CONFIG = {"lambda": {"use_docker": False}}


class _RequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug logs every request at INFO; tests and the demo make thousands.
        log.debug("%s %s", self.requestline, code)


class Emulator:
    """A running emulator: point boto3 clients at ``url``."""

    def __init__(self, server: BaseWSGIServer, gateway: Gateway, thread: threading.Thread) -> None:
        self._server = server
        self._gateway = gateway
        self._thread = thread
        self.url: str = _url(server.host, server.port)

    def reset(self) -> None:
        """Wipe all AWS state, the fault plan and the request counts.

        moto's ``/moto-api/reset`` wipes moto's backends, which hold our
        additions' state too; moto's Lambda configuration is then set again.
        """
        self._post("/moto-api/reset", {})
        self._post("/moto-api/config", _MOTO_CONFIG)
        self._gateway.set_faults(None)
        self._gateway.clear_requests()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()

    def set_faults(self, faults: FaultPlan | None) -> None:
        """Inject faults as ``faults`` says from the next request on; None = no faults."""
        self._gateway.set_faults(faults)

    def requests(self) -> dict[tuple[str, str], int]:
        """AWS requests seen since the last clear or reset, per (service, operation).

        Services are boto3 client names (``cloudwatch``), operations API names
        (``PutMetricAlarm``); a retried call counts once per attempt.
        """
        return self._gateway.requests()

    def clear_requests(self) -> None:
        """Forget the requests counted so far."""
        self._gateway.clear_requests()

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
    gateway = Gateway(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, gateway, threaded=True, request_handler=_RequestHandler)
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
