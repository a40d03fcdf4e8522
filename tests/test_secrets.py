"""Secrets stay secret: planted canary values never show up in what lensops writes.

The daemon runs with a webhook secret, an API token, an AWS secret access key and session
token, an unrelated secret in its environment, and an SSM SecureString that
nothing reads; it applies an estate where AWS answers errors quoting the
request. None of the canaries may appear in the daemon's logs, /metrics,
/api/v1/status, ``lensops status`` / ``history`` / ``plan`` / ``apply``
output, or an error message. (RunbookRun parameters are not secrets by
design: manifests name SSM parameters, never their values.)
"""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from botocore.config import Config

from conftest import ACCOUNT, REGION, alarm, run_cli
from lensops_emulator import FaultPlan
from controller.errors import classify
from daemon_helpers import DaemonProcess
from test_lambda_alias import alias

WEBHOOK_SECRET = "whsec-CANARY-7f3a9e21"
AWS_SECRET = "awsSecretCANARY0d8b1c5e"
SESSION_TOKEN = "sessionTokenCANARY41aa"
ENV_SECRET = "envCANARYdbPassword93"
SSM_SECRET = "ssmCANARYsecureString57"
REPO_TOKEN = "ghpCANARYrepoToken8812"
API_TOKEN = "apiCANARYbearer6d2f"
CANARIES = (WEBHOOK_SECRET, AWS_SECRET, SESSION_TOKEN, ENV_SECRET, SSM_SECRET, REPO_TOKEN, API_TOKEN)

SECRET_ENV = {
    "LENSOPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "LENSOPS_API_TOKEN": API_TOKEN,  # the helper's GETs carry it as a bearer
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "ECONLENS_DB_PASSWORD": ENV_SECRET,
}


def leaks(where: str, text: str) -> list[str]:
    return [f"{where}: {canary}" for canary in CANARIES if canary in text]


def _topic(name: str) -> str:
    return f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: {name}}}\nspec:\n  attributes: {{DisplayName: {name}}}\n"


def test_no_secret_reaches_logs_metrics_status_or_cli_output(aws, client, git_remote, tmp_path):
    client("ssm").put_parameter(Name="/econlens/prod/db-password", Value=SSM_SECRET, Type="SecureString")
    git_remote.tree.environment("dev", "sync: {selfHeal: true}\nvars: {dbPasswordParameter: /econlens/prod/db-password}")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", extra="alarmDescription: 'password in {{ vars.dbPasswordParameter }}'"))
    git_remote.tree.write("environments/dev/topics.yaml", _topic("alerts") + "---\n" + _topic("billing"))
    git_remote.tree.write("environments/dev/alias.yaml", alias("live", function="billing"))  # no such function: AWS's error quotes the request
    first = git_remote.commit("estate")
    aws.clear_requests()
    d = DaemonProcess(tmp_path, {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "1s", **SECRET_ENV})
    try:
        d.wait_until(lambda: "billing" in d.status()["environments"]["dev"]["message"])
        # one more pass with an AccessDenied from AWS (a message quoting the caller and the action)
        aws.set_faults(FaultPlan(error_rate=1.0, kinds={"denied"}, services={"sns"}))
        d.wait_until(lambda: any("AccessDenied" in e for e in d.status()["environments"]["dev"]["lastPass"].get("errors", [])))
        aws.set_faults(None)
        # webhooks: rejected (bad signature), accepted, and an invalid commit refused
        body = json.dumps({"ref": "refs/heads/main", "after": first}).encode()
        assert d.post_hook(body, "wrong-" + WEBHOOK_SECRET) == 401
        git_remote.tree.write("environments/dev/broken.yaml", alarm("api-broken").replace("  threshold:", "  threshhold:"))
        bad = git_remote.commit("typo")
        assert d.post_hook(body, WEBHOOK_SECRET, delivery="d-1") == 202
        d.wait_until(lambda: d.status()["environments"]["dev"].get("invalid"))
        surfaces = {
            "/metrics": d.get("/metrics")[1].decode(),
            "/api/v1/status": d.get("/api/v1/status")[1].decode(),
            "/readyz": d.get("/readyz")[1].decode(),
            "/healthz": d.get("/healthz")[1].decode(),
        }
    finally:
        aws.set_faults(None)
        d.stop()
    surfaces["daemon logs"] = d.log_path.read_text()  # the whole log, shutdown included
    for args in (("status",), ("status", "--output", "json"), ("history",), ("history", "--output", "json"),
                 ("plan", "--repo", git_remote.url), ("apply", "--repo", git_remote.url, "--output", "json")):
        result = run_cli(*args, env=SECRET_ENV)
        surfaces["lensops " + " ".join(a for a in args if a != git_remote.url)] = result.out + result.err

    status = json.loads(surfaces["/api/v1/status"])
    errors = " ".join(status["environments"]["dev"]["lastPass"]["errors"]) + status["environments"]["dev"]["message"]
    found = [leak for where, text in surfaces.items() for leak in leaks(where, text)]
    ssm_reads = {op: n for (service, op), n in aws.requests().items() if service == "ssm"}
    print(f"\n{len(CANARIES)} canaries over {len(surfaces)} surfaces ({sum(len(t) for t in surfaces.values())} characters): "
          f"{len(found)} leaks; SSM requests by lensops: {ssm_reads or 'none'}; AWS errors seen: {errors[:160]!r}")
    assert not found, found
    assert not ssm_reads
    # The AWS error path was exercised: AWS's own messages, quoting the request and the caller, reached the surfaces.
    alias_errors = [e for e in status["environments"]["dev"]["lastPass"]["errors"] if e.startswith("LambdaAlias/live: ")]
    assert len(alias_errors) == 1, errors
    assert f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:billing" in alias_errors[0]
    assert f"User: arn:aws:sts::{ACCOUNT}:assumed-role/lensops/lensops is not authorized to perform: sns:" in surfaces["daemon logs"]
    events = [json.loads(line) for line in surfaces["daemon logs"].splitlines() if line.startswith("{")]
    assert bad and any(e.get("event") == "webhook_rejected" for e in events)
    assert any(e.get("event") == "manifest_invalid" and e.get("revision") == bad for e in events)


@pytest.mark.parametrize(
    "shape",
    [
        "http://lensops:{token}@{host}/econlens/desired-state.git",
        "HTTP://lensops:{token}@{host}/econlens/desired-state.git",  # the scheme in capitals
        "http://lensops:p@ss{token}@{host}/econlens/desired-state.git",  # a password holding "@"
        "http://{host}/econlens/desired-state.git?access_token={token}",
    ],
)
def test_credentials_in_the_repository_url_are_redacted(aws, tmp_path, shape):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = shape.format(token=REPO_TOKEN, host=f"127.0.0.1:{port}")
    d = DaemonProcess(tmp_path, {"LENSOPS_REPO_URL": url, "LENSOPS_POLL_INTERVAL": "1s", **SECRET_ENV})
    try:
        source = d.wait_until(lambda: (s := d.status()["source"])["error"] and s)
        surfaces = {"/api/v1/status": d.get("/api/v1/status")[1].decode(), "/metrics": d.get("/metrics")[1].decode(), "/readyz": d.get("/readyz")[1].decode()}
    finally:
        d.stop()
    surfaces["daemon logs"] = d.log_path.read_text()  # the whole log, shutdown included
    cli = run_cli("plan", "--repo", url, env=SECRET_ENV)
    surfaces["lensops plan"] = cli.out + cli.err
    found = [leak for where, text in surfaces.items() for leak in leaks(where, text)]
    print(f"\nrepository URL with a token: source {source['repo']!r}, error {source['error'][:120]!r}; leaks {found}")
    assert not found, found
    assert "***" in source["repo"] and "127.0.0.1" in source["repo"] and cli.code == 1


@pytest.mark.parametrize("kind", ["denied", "throttle", "5xx"])
def test_aws_error_messages_never_carry_the_secret_key(aws, kind):
    """An AWS error, mapped by classify() as lensops reports it, holds no credential but the key id."""
    aws.set_faults(FaultPlan(error_rate=1.0, kinds={kind}, services={"sns"}))
    sns = boto3.client(
        "sns", endpoint_url=aws.url, region_name=REGION, aws_access_key_id="AKIACANARYKEYID", aws_secret_access_key=AWS_SECRET,
        aws_session_token=SESSION_TOKEN, config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
    )
    try:
        sns.create_topic(Name="alerts", Attributes={"DisplayName": "x"})
    except Exception as exc:  # the error under test
        text = f"{classify(exc)} {exc!r} {getattr(exc, 'response', '')}"
    else:
        pytest.fail("the fault plan should have failed the call")
    assert not leaks(kind, text), text
    assert text.strip()


@pytest.mark.parametrize(
    "settings",
    [
        f'webhook_secret: "{WEBHOOK_SECRET}\nrepo_url: .\n',  # a YAML error just after the secret
        f"webhook_secret: {{value: {WEBHOOK_SECRET}}}\n",  # the secret of the wrong type
        f"webhook_secret: {WEBHOOK_SECRET}\nconcurrency: [{WEBHOOK_SECRET}]\n",  # another setting wrong
        f"api_token: [{API_TOKEN}]\n",  # the API token of the wrong type
    ],
)
def test_a_bad_settings_file_is_reported_without_its_values(tmp_path, lensops, settings):
    config = tmp_path / "lensops.yaml"
    config.write_text(settings)
    result = lensops("status", "--config", str(config))
    assert result.code == 1 and result.err.startswith("lensops: ")
    assert not leaks("lensops status --config", result.out + result.err), result.err
