"""How our additions answer requests: as moto response classes, called straight from the gateway.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). Each addition module (cloudwatch, budgets,
backup, lambda_, cloudformation) subclasses moto's response class for its
service and names the operations it answers. Being moto response classes,
additions get moto's request parsing and its protocol-aware serialization of
results and errors for free, and reach moto's backends the way moto's own
operations do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from moto.core.request import Request
from moto.core.responses import BaseResponse
from werkzeug.wrappers import Response


class _ServerRequest(Request):
    # Tells moto a real WSGI server supplies the Date header, as for its own requests.
    from_wsgi_server = True


@dataclass(frozen=True)
class Addition:
    """Operations of one service that a moto response subclass answers instead of moto."""

    service: str
    operations: frozenset[str]
    handler: type[BaseResponse]


def routing_table(additions: Iterable[Addition]) -> dict[tuple[str, str], type[BaseResponse]]:
    """Map (service, operation) to the handler class answering it."""
    table: dict[tuple[str, str], type[BaseResponse]] = {}
    for addition in additions:
        for operation in addition.operations:
            table[(addition.service, operation)] = addition.handler
    return table


def serve(handler: type[BaseResponse], environ: dict[str, Any], start_response: Any) -> Any:
    """Answer a WSGI request with ``handler`` the way moto's Flask views do."""
    request = _ServerRequest(environ)
    status, headers, body = handler.dispatch(request, request.raw_url, dict(request.headers))
    # moto passes the status along as a header too; it is not one AWS sends.
    headers = {name: value for name, value in headers.items() if name != "status"}
    return Response(body, status=int(status), headers=headers)(environ, start_response)
