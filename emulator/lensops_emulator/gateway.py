"""The WSGI layer in front of moto: counts requests, injects faults, routes to our additions.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). Every AWS request is decoded (wire.py),
counted per (service, operation), throttled when its quota's bucket is empty
(quotas.py), delayed by the latency of a call (quotas.py, plus the fault plan's
for its services), possibly failed as the fault plan says (faults.py), then
answered by an addition if one owns the operation (dispatch.py), else by moto
(``dispatch.MotoApplication``). ``/moto-api/`` requests go straight to moto.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from typing import Any, NoReturn

from moto.core.responses import BaseResponse

from . import backup, budgets, cloudformation, cloudwatch, lambda_, logs, tagging
from .dispatch import routing_table, serve
from werkzeug.wrappers import Response

from .faults import GARBLED, GATEWAY, RESET, FaultInjector, FaultPlan, throttling_error
from .quotas import QuotaKeeper, Quotas
from .wire import AwsCall, AwsError, error_response, identify, request_params

ADDITIONS = (
    cloudwatch.ADDITION,
    budgets.ADDITION,
    backup.ADDITION,
    lambda_.ADDITION,
    cloudformation.ADDITION,
    tagging.ADDITION,
    logs.ADDITION,
)


class Gateway:
    """WSGI application wrapping moto's application (``dispatch.MotoApplication``)."""

    def __init__(self, moto_app: Any) -> None:
        self._moto_app = moto_app
        self._routes: dict[tuple[str, str], type[BaseResponse]] = routing_table(ADDITIONS)
        self._faults = FaultInjector()
        self._quotas = QuotaKeeper()
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._throttled: Counter[tuple[str, str]] = Counter()
        self._in_flight = 0
        self._peak = 0

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Inject faults as ``plan`` says from the next request on; None stops."""
        self._faults.set_plan(plan)

    def set_quotas(self, quotas: Quotas | None) -> None:
        """Hold requests to ``quotas`` from the next one on, every bucket full; None: no quotas."""
        self._quotas.set_quotas(quotas)

    def requests(self) -> dict[tuple[str, str], int]:
        """Requests seen since the last clear, per (service, operation), throttled ones included."""
        with self._lock:
            return dict(self._requests)

    def throttled(self) -> dict[tuple[str, str], int]:
        """Requests answered with a throttling error because their quota's bucket was empty, since the last clear."""
        with self._lock:
            return dict(self._throttled)

    def clear_requests(self) -> None:
        """Forget the requests (and throttled ones) counted so far, and the peak of those in flight."""
        with self._lock:
            self._requests.clear()
            self._throttled.clear()
            self._peak = self._in_flight

    def peak_in_flight(self) -> int:
        """The most AWS requests answered at once since the last clear."""
        with self._lock:
            return self._peak

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self._moto_app(environ, start_response)
        call = identify(environ)
        with self._lock:
            self._requests[(call.service, call.operation)] += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            return self._answer(call, environ, start_response)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, call: AwsCall, environ: dict[str, Any], start_response: Any) -> Any:
        admitted = self._quotas.admit(call.service, call.operation)
        delay = self._quotas.latency_seconds() + self._faults.latency_seconds(call.service)
        if delay:
            time.sleep(delay)
        if not admitted:
            with self._lock:
                self._throttled[(call.service, call.operation)] += 1
            return error_response(call, throttling_error(call.service))(environ, start_response)
        fault = self._faults.match(call.service, call.operation, lambda: request_params(environ)) or self._faults.draw(call.service)
        if fault == RESET:
            _drop_connection(environ, call)
        if fault == GATEWAY:
            return _gateway_page(environ, start_response)
        if fault == GARBLED:
            return Response("upstream connect error or disconnect/reset before headers", status=200, content_type="text/plain")(
                environ, start_response
            )
        if isinstance(fault, AwsError):
            return error_response(call, fault)(environ, start_response)
        handler = self._routes.get((call.service, call.operation))
        if handler is not None:
            return serve(handler, environ, start_response)
        return self._moto_app(environ, start_response)


_GATEWAY_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html><head><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer.</p></body></html>
"""


def _gateway_page(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("502 Bad Gateway", [("Content-Type", "text/html"), ("Content-Length", str(len(_GATEWAY_PAGE)))])
    return [_GATEWAY_PAGE]


def _drop_connection(environ: dict[str, Any], call: AwsCall) -> NoReturn:
    connection: socket.socket = environ["werkzeug.socket"]
    connection.shutdown(socket.SHUT_RDWR)
    # werkzeug treats a ConnectionError from the application as a client that
    # went away: it sends nothing and logs nothing.
    raise ConnectionResetError(f"fault injected: connection reset during {call.service}.{call.operation}")
