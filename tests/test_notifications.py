"""Notifications on failure and rollback: a Slack-compatible JSON POST and an SNS publish."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import alarm, run_cli
from daemon_helpers import wait_for
from test_rollback import HEALTH, _apply_in_background, _health_alarm, _set, _threshold


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # stdlib name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_a_rollback_is_posted_to_the_webhook_and_published_to_the_topic(aws, client, tree, webhook):
    url, received = webhook
    _health_alarm(client)
    queue = client("sqs").create_queue(QueueName="ops")["QueueUrl"]
    queue_arn = client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    tree.environment("dev", f"health: {{alarms: [{HEALTH}], bakeTime: 3s}}\nnotifications: {{topic: ref:Topic/alerts, webhookUrl: '{url}'}}")
    topic = f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: alerts}}\nspec:\n  subscriptions: [{{protocol: sqs, endpoint: '{queue_arn}'}}]\n"
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 5) + "---\n" + topic)
    assert run_cli("apply", "--repo", str(tree.root)).code == 0
    tree.write("environments/dev/a.yaml", alarm("api-5xx", 6) + "---\n" + topic)
    running = _apply_in_background(tree)
    wait_for(lambda: _threshold(client) == 6, timeout=20, what="the apply's write of threshold 6", alive=running)
    _set(client, "ALARM")
    running.communicate(timeout=60)
    assert running.returncode == 1

    assert received and "rolled back" in received[-1]["text"] and HEALTH in received[-1]["text"]
    messages = client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in messages]
    assert any("rolled back" in b.get("Subject", "") for b in bodies), bodies
