"""``LENSOPS_API_TOKEN``: with it set, ``GET /api/v1/status`` answers only ``Authorization: Bearer
<token>`` (401 with ``WWW-Authenticate: Bearer`` and no status otherwise), while ``/metrics``,
``/healthz`` and ``/readyz`` stay open; the token is never logged. On the HTTP server with a
stand-in daemon, and through ``lensops run``."""

from __future__ import annotations

import http.client
import json

import pytest

from conftest import alarm

TOKEN = "apiTokenCANARY-5c1e0b7d"


def _get(address: tuple[str, int], path: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": authorization} if authorization is not None else {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer " + "x" * 10_000, f"Token {TOKEN}"],
)
def test_status_without_the_bearer_is_401_and_shows_nothing(http_server, authorization):
    server, _ = http_server(api_token=TOKEN)
    status, headers, body = _get(server.address, "/api/v1/status", authorization)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "environments" not in body.decode() and TOKEN not in body.decode()


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "])
def test_status_with_the_bearer_answers(http_server, authorization):
    server, _ = http_server(api_token=TOKEN)
    status, _, body = _get(server.address, "/api/v1/status", authorization)
    assert status == 200 and json.loads(body)["environments"]["dev"]["status"] == "synced"


def test_the_probes_and_metrics_stay_open(http_server):
    server, _ = http_server(api_token=TOKEN)
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/status?x=1"):
        status, _, _ = _get(server.address, path)
        assert status == (401 if path.startswith("/api/") else 200), path


def test_without_a_token_status_is_open(http_server):
    server, _ = http_server()
    assert _get(server.address, "/api/v1/status")[0] == 200


def test_the_daemon_asks_for_the_bearer_and_never_logs_it(daemon, git_remote):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    first = git_remote.commit("one alarm")
    d = daemon(LENSOPS_API_TOKEN=TOKEN)
    d.wait_until(lambda: d.applied_revision("dev") == first)  # the helper sends the bearer
    status, body = d.get("/api/v1/status", headers={})
    assert status == 401 and "environments" not in body.decode() and first not in body.decode()
    assert d.get("/api/v1/status", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, body = d.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["environments"]["dev"]["appliedRevision"] == first
    for path in ("/healthz", "/readyz", "/metrics"):
        assert d.get(path, headers={})[0] == 200, path
    d.stop()
    assert TOKEN not in d.logs()
