"""How our additions answer requests: as moto response classes, called straight from the gateway.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). Each addition module (cloudwatch, budgets,
backup, lambda_, cloudformation) subclasses moto's response class for its
service and names the operations it answers. Being moto response classes,
additions get moto's request parsing and its protocol-aware serialization of
results and errors for free, and reach moto's backends the way moto's own
operations do.

Everything else goes to ``MotoApplication``: moto's own server-mode
application, minus two of its per-request costs (see there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import moto.core.responses
from botocore.exceptions import ClientError
from flask import Flask
from flask import Response as FlaskResponse
from moto.core.request import Request
from moto.core.responses import BaseResponse
from moto.core.utils import convert_to_flask_response
from moto.moto_api import recorder
from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication, create_backend_app
from moto.settings import DISABLE_GLOBAL_CORS
from werkzeug.exceptions import BadRequestKeyError, HTTPException
from werkzeug.wrappers import Response

# What flask-cors, which moto installs on each of its Flask apps, adds to an
# answer to a request without an Origin header.
_CORS_ORIGIN = "Access-Control-Allow-Origin"
_CORS_HEADERS: tuple[tuple[str, str], ...] = () if DISABLE_GLOBAL_CORS else ((_CORS_ORIGIN, "*"),)


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


def cache_method_names() -> None:
    """Have moto list each response class's methods once, not on every request (idempotent).

    moto's ``call_action`` runs ``inspect.getmembers`` over the response class
    for every request to check that the operation's method exists; a class's
    methods do not change while the emulator runs.
    """
    names = moto.core.responses.method_names_from_class
    if not hasattr(names, "cache_info"):
        moto.core.responses.method_names_from_class = functools.cache(names)  # type: ignore[assignment]


class MotoApplication(DomainDispatcherApplication):
    """moto's server-mode WSGI application, without two of its per-request costs.

    - The backend serving a host is looked up once per host: moto lists its
      package directory (some 180 ``stat`` calls) for it on every request.
    - A ``POST /`` without an ``Origin`` header, to a service whose Flask view
      there is its response class's ``dispatch`` (the JSON and query
      protocols: CloudWatch, STS, SSM, DynamoDB, SNS, ...), calls that
      ``dispatch`` as moto's Flask view does and answers what Flask would
      (Flask's Response, flask-cors's header), without Flask's request
      context, URL matching and hooks. Other requests go through Flask.
    """

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backend_by_host: dict[str | None, Any] = {}
        self._root_views: dict[Flask, Callable[..., Any] | None] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        """moto's backend name for ``host``, found once per host (the URL patterns and moto's modules never change)."""
        if host not in self._backend_by_host:
            self._backend_by_host[host] = super().get_backend_for_host(host)
        return self._backend_by_host[host]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        app = self.get_application(environ)
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/" and "HTTP_ORIGIN" not in environ:
            if app not in self._root_views:
                self._root_views[app] = _root_dispatch(app)
            view = self._root_views[app]
            if view is not None:
                return _answer_as_flask(app, view, environ, start_response)
        return app(environ, start_response)


def _root_dispatch(app: Flask) -> Callable[..., Any] | None:
    """The ``dispatch`` moto's Flask ``app`` answers ``POST /`` with, or None if Flask would do more than call it."""
    if any(app.before_request_funcs.values()) or app.url_value_preprocessors or app.teardown_request_funcs:
        return None
    if list(app.after_request_funcs) not in ([], [None]) or len(app.after_request_funcs.get(None, [])) != len(_CORS_HEADERS):
        return None
    for rule in app.url_map.iter_rules():  # in the order added, which is the order Flask tries them in
        if rule.rule == "/" and "POST" in (rule.methods or ()):
            view = app.view_functions[rule.endpoint]
            if isinstance(view, convert_to_flask_response) and getattr(view.callback, "__name__", "") == "dispatch":
                return view.callback
            return None
    return None


def _answer_as_flask(app: Flask, view: Callable[..., Any], environ: dict[str, Any], start_response: Any) -> Any:
    """Answer as moto's Flask view (``convert_to_flask_response``) and Flask's request handling would."""
    request = BackendRequest(environ)
    request.max_content_length = app.config["MAX_CONTENT_LENGTH"]
    request.max_form_memory_size = app.config["MAX_FORM_MEMORY_SIZE"]
    request.max_form_parts = app.config["MAX_FORM_PARTS"]
    try:
        recorder._record_request(request)
        try:
            result = view(request, request.raw_url, dict(request.headers))
        except ClientError as error:
            result = 400, {}, error.response["Error"]["Message"]
        status, headers, content = result if len(result) == 3 else (200, {}, result)
        response = FlaskResponse(response=content, status=status, headers=headers)
    except BadRequestKeyError:
        raise  # Flask in debug mode, as moto runs it, lets these through
    except HTTPException as error:
        response = FlaskResponse.force_type(error, environ)
    if not response.headers.get(_CORS_ORIGIN):
        for name, value in _CORS_HEADERS:
            response.headers.add(name, value)
    return response(environ, start_response)
