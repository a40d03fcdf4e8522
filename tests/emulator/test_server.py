"""The server: keep-alive connections, clean stops, and moto's answers unchanged by the gateway's short cut."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import urllib3.connection
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

from lensops_emulator import Emulator, FaultPlan, start

from .conftest import ACCOUNT_ID, REGION


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every TCP connection urllib3 (so botocore) opens from now on, in order."""
    opened: list[object] = []
    new_conn = urllib3.connection.HTTPConnection._new_conn

    def counting(self: urllib3.connection.HTTPConnection) -> Any:
        sock = new_conn(self)
        opened.append(sock)
        return sock

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting)
    return opened


def test_one_client_sends_its_calls_over_one_connection(client: Any, connections: list[object]) -> None:
    sts = client("sts")

    identities = [sts.get_caller_identity()["Account"] for _ in range(5)]

    assert identities == [ACCOUNT_ID] * 5
    assert len(connections) == 1


def test_error_answers_keep_the_connection(client: Any, connections: list[object]) -> None:
    lambda_ = client("lambda")
    with pytest.raises(ClientError) as missing:
        lambda_.get_function(FunctionName="nothing-here")  # 404 with a JSON body
    client_budgets = client("budgets")
    with pytest.raises(ClientError) as not_found:
        client_budgets.describe_budget(AccountId=ACCOUNT_ID, BudgetName="nothing-here")  # 400 over JSON
    listed = lambda_.list_functions()

    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert not_found.value.response["Error"]["Code"] == "NotFoundException"
    assert listed["Functions"] == []
    assert len(connections) == 2  # one per client


def test_raw_keep_alive_two_requests_share_a_socket(emulator: Emulator) -> None:
    url = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        answers = []
        sockets = []
        for _ in range(2):
            connection.request("GET", "/moto-api/data.json")
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Connection"), len(response.read())))
            sockets.append(connection.sock)
    finally:
        connection.close()

    assert [status for status, _, _ in answers] == [200, 200]
    assert [close for _, close, _ in answers] == [None, None]
    assert sockets[0] is sockets[1] is not None


def test_a_chunked_request_body_is_read_whole_before_the_next_request(emulator: Emulator) -> None:
    url = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        # moto's reset ignores its body; the server must still read all of it.
        connection.request("POST", "/moto-api/reset", body=iter([b"{}", b" " * 70_000]), encode_chunked=True)
        first = connection.getresponse()
        first.read()
        connection.request("GET", "/moto-api/data.json")
        second = connection.getresponse()
        data = second.read()
    finally:
        connection.close()

    assert (first.status, second.status) == (200, 200)
    assert data.startswith(b"{")


def test_a_reset_fault_drops_that_connection_only(emulator: Emulator, client: Any, connections: list[object]) -> None:
    sts = client("sts")
    sts.get_caller_identity()
    emulator.set_faults(FaultPlan(error_rate=1.0, kinds={"reset"}))

    with pytest.raises(ConnectionClosedError):
        sts.get_caller_identity()
    emulator.set_faults(None)

    assert sts.get_caller_identity()["Account"] == ACCOUNT_ID
    assert len(connections) == 2


def test_stop_returns_with_idle_connections_open_and_they_get_no_more_answers() -> None:
    other = start()
    sts = boto3.client(
        "sts",
        endpoint_url=other.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    sts.get_caller_identity()  # leaves a connection open in the client's pool

    stopper = threading.Thread(target=other.stop)
    stopper.start()
    stopper.join(timeout=10)

    assert not stopper.is_alive()
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        sts.get_caller_identity()


# --- moto's own operations answer as moto's Flask app does ------------------------------------------------------


class _Captured(Exception):
    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("request captured")
        self.request = request


def _signed(client: Any, operation: str, **params: Any) -> AWSPreparedRequest:
    """The request botocore would send for ``operation``, without sending it."""

    def capture(request: AWSPreparedRequest, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register_first("before-send", capture)
    try:
        getattr(client, operation)(**params)
    except _Captured as captured:
        return captured.request
    finally:
        client.meta.events.unregister("before-send", capture)
    raise AssertionError("botocore sent nothing")


def _normalised(status: int, headers: list[tuple[str, str]], body: bytes) -> tuple[int, list[tuple[str, str]], str]:
    """The answer without what differs from one answer to the next: the request id, and the HTTP server's own headers."""
    request_id = next((v for k, v in headers if k.lower() == "x-amzn-requestid"), "\0")
    kept = [
        (name.lower(), value.replace(request_id, "<id>"))
        for name, value in headers
        if name.lower() != "date" and not (name.lower() == "server" and value.startswith("Werkzeug/"))
    ]
    text = body.decode().replace(request_id, "<id>")
    return status, sorted(kept), re.sub(r"\d{10}\.\d+", "<time>", text)


@pytest.fixture
def flask_app() -> Iterator[Client]:
    """moto's own server-mode application, called in-process, sharing the emulator's state."""
    yield Client(DomainDispatcherApplication(create_backend_app))


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("sts", "get_caller_identity", {}),  # query
        ("cloudwatch", "list_dashboards", {}),  # JSON, moto's
        ("cloudwatch", "get_dashboard", {"DashboardName": "missing"}),  # JSON error
        ("ssm", "get_parameter", {"Name": "/missing"}),  # JSON error
        ("sns", "list_topics", {}),  # query
        ("dynamodb", "describe_table", {"TableName": "missing"}),  # JSON error
        ("lambda", "list_functions", {}),  # REST-JSON: through Flask either way
    ],
)
def test_moto_operations_answer_as_moto_s_flask_app(
    emulator: Emulator, client: Any, flask_app: Client, service: str, operation: str, params: dict[str, Any]
) -> None:
    request = _signed(client(service), operation, **params)
    url = urlsplit(request.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()

    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.request(request.method, path, body=body, headers=headers)
        response = connection.getresponse()
        over_http = _normalised(response.status, response.getheaders(), response.read())
    finally:
        connection.close()
    flask = flask_app.open(path, method=request.method, headers=headers, data=body)
    in_flask = _normalised(flask.status_code, list(flask.headers.items()), flask.get_data())

    assert over_http == in_flask
    assert over_http[0] in (200, 400, 404)
