"""Notifications on failure, rollback and runbook results: SNS and a Slack-compatible webhook.

Best effort by design: a notification that cannot be sent is logged, never
fails the reconcile that caused it. No secret goes into a message.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from controller import logs
from controller.errors import classify
from controller.manifests.model import EnvironmentSpec
from controller.kinds import Context

log = logs.get("lensops.notify")


def notify(ctx: Context, spec: EnvironmentSpec, topic_arn: str | None, subject: str, fields: dict[str, Any]) -> None:
    """Send ``subject`` and ``fields`` to the environment's SNS topic and webhook, when set."""
    lines = [subject] + [f"{k}: {v}" for k, v in fields.items()]
    text = "\n".join(lines)
    if topic_arn:
        try:
            ctx.client("sns").publish(TopicArn=topic_arn, Subject=subject[:99], Message=text)
            log.info("notification_sent", environment=ctx.environment, channel="sns", subject=subject)
        except Exception as exc:  # reported, never fatal
            log.warning("notification_failed", environment=ctx.environment, channel="sns", error=str(classify(exc)))
    url = spec.notifications.webhookUrl
    if url:
        body = json.dumps({"text": text, "subject": subject, "fields": fields}, default=str).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                answer.read(1024)
            log.info("notification_sent", environment=ctx.environment, channel="webhook", subject=subject)
        except OSError as exc:
            log.warning("notification_failed", environment=ctx.environment, channel="webhook", error=str(exc))
