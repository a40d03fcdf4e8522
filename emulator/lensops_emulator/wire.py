"""What an AWS request on the wire is: its service, operation and protocol, and how errors look.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). The gateway uses this module to count
requests, to route the operations moto lacks to our additions, and to answer
injected faults in the form each protocol's client parses.

boto3 1.44.5 speaks these protocols to the services lensops uses:
``json`` (X-Amz-Target header; CloudWatch, Budgets, SSM, DynamoDB, WAFv2, the
tagging API), ``rest-json`` (method and path; Lambda, Backup), ``query``
(form-encoded ``Action=``; STS, SNS, RDS, CloudFormation). botocore prefers
``json`` over ``smithy-rpc-v2-cbor`` whenever a service offers both, so CBOR
never reaches the emulator from boto3.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from botocore.exceptions import DataNotFoundError
from moto.core.request import Request
from moto.core.routing import get_service_router
from moto.core.utils import get_service_model
from moto.utilities.aws_headers import gen_amzn_requestid_long
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

# SigV4 signing names that differ from the boto3 client name.
_CLIENT_NAME_BY_SIGNING_NAME = {
    "monitoring": "cloudwatch",
    "tagging": "resourcegroupstaggingapi",
    "email": "ses",
    "states": "stepfunctions",
}

_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class AwsCall:
    """One decoded request.

    ``service`` is the boto3 client name (``cloudwatch``, not ``monitoring``),
    ``""`` for an unsigned request; ``operation`` is the API operation name
    (``PutMetricAlarm``), ``""`` when no operation matches.
    """

    service: str
    operation: str
    protocol: str


@dataclass(frozen=True)
class AwsError:
    """An error as AWS sends it: the query-protocol code and the JSON one can differ.

    ``fields``: more members of a JSON error body, beside ``__type`` and ``message``
    (Lambda's TooManyRequestsException carries ``Type`` and ``Reason``).
    """

    status: int
    code: str
    json_code: str
    message: str
    sender_fault: bool
    fields: tuple[tuple[str, str], ...] = ()


def identify(environ: dict[str, Any]) -> AwsCall:
    """Decode the service, operation and protocol of a WSGI request.

    A form-encoded body is read to find its ``Action`` and put back, so the
    application behind still sees it whole.
    """
    service = _service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return AwsCall(service, target.rsplit(".", 1)[-1], "json")
    action = _query_action(environ)
    if action is not None:
        protocol = "ec2" if _model_protocol(service) == "ec2" else "query"
        return AwsCall(service, action, protocol)
    return AwsCall(service, _rest_operation(service, environ), _model_protocol(service) or "rest-json")


def request_params(environ: dict[str, Any]) -> dict[str, str]:
    """A request's top-level parameters: its query string's, its form body's (query protocol), its
    JSON body's scalars. The body is put back for the application behind."""
    params = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.startswith(_FORM_CONTENT_TYPE):
        params.update({key: values[0] for key, values in parse_qs(body.decode("utf-8", errors="replace")).items()})
    elif "json" in content_type and body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            params.update({key: str(value) for key, value in data.items() if isinstance(value, (str, int, float, bool))})
    return params


def error_response(call: AwsCall, error: AwsError) -> Response:
    """Render ``error`` the way the client of ``call``'s protocol parses errors."""
    request_id = gen_amzn_requestid_long()
    headers = {"x-amzn-RequestId": request_id}
    if call.protocol in ("query", "ec2", "rest-xml"):
        return Response(_xml_error(call, error, request_id), status=error.status, headers=headers, content_type="text/xml")
    headers["x-amzn-ErrorType"] = error.json_code
    if _is_query_compatible(call.service):
        # botocore takes the error code of awsQueryCompatible services (CloudWatch)
        # from this header, so clients see the same code as over the query protocol.
        headers["x-amzn-query-error"] = f"{error.code};{'Sender' if error.sender_fault else 'Receiver'}"
    body = json.dumps({"__type": error.json_code, "message": error.message, **dict(error.fields)})
    content_type = "application/json" if call.protocol == "rest-json" else "application/x-amz-json-1.1"
    return Response(body, status=error.status, headers=headers, content_type=content_type)


def _service(environ: dict[str, Any]) -> str:
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    _, _, credential = authorization.partition("Credential=")
    if not credential:
        credential = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential", [""])[0]
    scope = credential.split(",")[0].strip().split("/")
    if len(scope) != 5:
        return ""
    signing_name = scope[3].lower()
    return _CLIENT_NAME_BY_SIGNING_NAME.get(signing_name, signing_name)


def _query_action(environ: dict[str, Any]) -> str | None:
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if action:
        return action[0]
    if not environ.get("CONTENT_TYPE", "").startswith(_FORM_CONTENT_TYPE):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    action = parse_qs(body.decode("utf-8", errors="replace")).get("Action")
    return action[0] if action else None


def _rest_operation(service: str, environ: dict[str, Any]) -> str:
    if not service:
        return ""
    try:
        operation, _ = get_service_router(service).match(Request(environ))
    except (DataNotFoundError, NotFound, NotImplementedError):
        return ""
    return str(operation.name)


def _model_protocol(service: str) -> str:
    try:
        return str(get_service_model(service).resolved_protocol)
    except DataNotFoundError:
        return ""


def _is_query_compatible(service: str) -> bool:
    try:
        return "awsQueryCompatible" in get_service_model(service).metadata
    except DataNotFoundError:
        return False


def _xml_error(call: AwsCall, error: AwsError, request_id: str) -> str:
    code, message = escape(error.code), escape(error.message)
    if call.protocol == "ec2":
        return (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    fault = "Sender" if error.sender_fault else "Receiver"
    return (
        f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
