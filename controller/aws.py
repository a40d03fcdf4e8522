"""The AWS client factory: one place that makes boto3 clients.

Clients are made per (service, account, region, role) and cached, with
botocore's own retry modes (adaptive by default: backoff with jitter and a
client-side rate limiter that slows down on throttling). Every HTTP attempt
is counted into ``lensops_aws_api_calls_total`` (``ok``, ``throttled`` or
``error``; a read answered "does not exist" is ``ok``). Before it is sent,
each attempt (botocore's retries included) waits for a token of its API's
rate (``controller/pacing.py``: the process's buckets per account, region and
operation), then for one of the process-wide slots that bound the requests
in flight (``LENSOPS_CONCURRENCY``): in that order, so that a request waiting
for its rate holds no slot another needs. Nothing here runs at import time.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from typing import Any

import boto3
import botocore.config
import botocore.session
import botocore.utils

from controller import metrics
from controller.errors import PermanentError, classify, is_absent, is_throttling
from controller.pacing import Pacer, process_pacer

def parse_timestamp(value: Any) -> dt.datetime:
    """botocore's timestamp parsing, without dateutil on the common forms.

    Epoch seconds (the JSON protocols) become aware UTC datetimes, ISO 8601
    text (the query protocols) goes through ``datetime.fromisoformat``; anything
    else is botocore's own ``parse_timestamp``. Same instants as botocore's,
    which gives epoch values the local zone: 10,000 alarms carry 30,000
    timestamps, and dateutil's zone arithmetic was a tenth of a plan's CPU.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str) and value[4:5] == "-":  # ISO 8601's extended form; 20261202 is epoch seconds to botocore
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    parsed: dt.datetime = botocore.utils.parse_timestamp(value)
    return parsed


def _botocore_session() -> botocore.session.Session:
    """A botocore session whose response parsers use ``parse_timestamp``."""
    session = botocore.session.Session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


class ClientFactory:
    """Makes and caches boto3 clients for one process.

    ``concurrency`` bounds the HTTP requests in flight across every client the
    factory made; ``retry_mode`` and ``max_attempts`` go to botocore's retry
    handler, which owns backoff, jitter and throttling; ``pacer`` paces every
    request to its API's rate (default: the process's, shared by every factory).
    """

    def __init__(
        self,
        concurrency: int = 8,
        retry_mode: str = "adaptive",
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        pacer: Pacer | None = None,
    ):
        self.pacer = pacer if pacer is not None else process_pacer()
        """The token buckets every request of this factory's clients waits for."""
        self.concurrency = max(1, concurrency)
        """Requests in flight at once, across every client the factory made."""
        self._semaphore = threading.BoundedSemaphore(self.concurrency)
        self._held = threading.local()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str, str], Any] = {}
        self._sessions: dict[tuple[str, str], boto3.Session] = {}
        self._config = botocore.config.Config(
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, concurrency * 2),
        )

    def client(self, service: str, region: str, role_arn: str = "", account: str = "") -> Any:
        """A cached client for ``service`` in ``region``, through ``role_arn`` when given."""
        key = (service, account, region, role_arn)
        with self._lock:
            found = self._clients.get(key)
        if found is not None:
            return found
        session = self._session(region, role_arn)
        made = session.client(service, region_name=region, config=self._config)
        self._instrument(made, account or _account_of(role_arn))
        with self._lock:
            return self._clients.setdefault(key, made)

    def _session(self, region: str, role_arn: str) -> boto3.Session:
        with self._lock:
            found = self._sessions.get((region, role_arn))
        if found is not None:
            return found
        if not role_arn:
            session = boto3.Session(botocore_session=_botocore_session(), region_name=region)
        else:
            session = self._assumed_session(region, role_arn)
        with self._lock:
            return self._sessions.setdefault((region, role_arn), session)

    def _assumed_session(self, region: str, role_arn: str) -> boto3.Session:
        """A session whose credentials come from sts:AssumeRole and refresh themselves."""
        from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

        base = boto3.Session(botocore_session=_botocore_session(), region_name=region)
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=lambda *a, **kw: self._counted(base._session.create_client(*a, **kw)),
            source_credentials=base.get_credentials(),
            role_arn=role_arn,
            extra_args={"RoleSessionName": "lensops"},
        )
        credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        botocore_session = _botocore_session()
        botocore_session._credentials = credentials
        return boto3.Session(botocore_session=botocore_session, region_name=region)

    def _counted(self, client: Any) -> Any:
        self._instrument(client, "")
        return client

    def _instrument(self, client: Any, account: str) -> None:
        # Calls are labelled with the name the client was made with (boto3's: ``logs``,
        # not botocore's service id ``cloudwatch-logs``), as reconcilers name their service.
        # Quotas are per account and region: the client's are its requests' bucket.
        service = str(client.meta.service_model.service_name)
        where = (account, str(client.meta.region_name or ""), service)
        events = client.meta.events
        events.register("before-send", functools.partial(self._before_send, *where))
        events.register("response-received", functools.partial(self._response_received, *where))
        events.register("after-call-error", functools.partial(self._call_failed, service))

    def _before_send(self, account: str, region: str, service: str, event_name: str, **_: Any) -> None:
        # The rate's token first, then the slot: a request waiting for its rate holds no slot.
        self.pacer.acquire(account, region, service, _operation(event_name))
        self._semaphore.acquire()
        self._held.value = getattr(self._held, "value", 0) + 1

    def _call_failed(self, service: str, event_name: str, **_: Any) -> None:
        """A call that raised before its answer was read (an answer botocore cannot parse, ...).

        botocore then never sends ``response-received``: the attempt's slot is
        freed here, or a long-running daemon would lose its concurrency one
        slot at a time, and the attempt is counted as an error.
        """
        held = getattr(self._held, "value", 0)
        if held <= 0:
            return
        self._held.value = 0
        for _slot in range(held):  # not `_`: that is the keyword arguments
            self._semaphore.release()
        _count(service, event_name, "error", held)

    def _response_received(
        self, account: str, region: str, service: str, event_name: str, parsed_response: Any = None, exception: Any = None, **_: Any
    ) -> None:
        if getattr(self._held, "value", 0) > 0:
            self._held.value -= 1
            self._semaphore.release()
        outcome = "ok"
        if exception is not None:
            outcome = "error"
        elif isinstance(parsed_response, dict):
            error = parsed_response.get("Error") or {}
            status = parsed_response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
            code = str(error.get("Code", ""))
            if is_throttling(code) or status == 429:
                outcome = "throttled"
            elif (error or status >= 400) and not is_absent(_operation(event_name), code, status, str(error.get("Message", ""))):
                outcome = "error"  # a read answering "does not exist (yet)" is the API working: ok
        if exception is None:  # an answer came: the bucket's rate goes down (throttled) or back up
            self.pacer.answered(account, region, service, _operation(event_name), throttled=outcome == "throttled")
        _count(service, event_name, outcome)


def _account_of(role_arn: str) -> str:
    """The account of ``arn:aws:iam::<account>:role/...``, or ''."""
    parts = role_arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _operation(event_name: str) -> str:
    """The operation of botocore's ``<event>.<service-id>.<Operation>`` event name."""
    return event_name.rsplit(".", 1)[-1]


def _count(service: str, event_name: str, outcome: str, attempts: int = 1) -> None:
    """Count attempts into ``lensops_aws_api_calls_total``; ``event_name`` is botocore's ``<event>.<service-id>.<Operation>``."""
    metrics.AWS_API_CALLS.labels(service, _operation(event_name), outcome).inc(attempts)


def caller_account(factory: ClientFactory, region: str, role_arn: str = "") -> str:
    """The account id that the credentials act in (sts:GetCallerIdentity)."""
    try:
        return str(factory.client("sts", region, role_arn).get_caller_identity()["Account"])
    except Exception as exc:  # mapped onto the taxonomy
        raise classify(exc) from exc


def check_account(factory: ClientFactory, region: str, role_arn: str, expected: str) -> str:
    """Refuse to act when the credentials are not in the account the manifest names."""
    actual = caller_account(factory, region, role_arn)
    if expected and actual != expected:
        raise PermanentError(
            f"account guard: credentials act in account {actual}, the Environment says {expected}"
        )
    return actual
