"""Sync windows: is an environment allowed to change now?

A window opens at each time its cron ``schedule`` fires and stays open for
``duration``. Changes are held inside any ``deny`` window, and outside every
``allow`` window when the environment has allow windows.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from controller.manifests.cron import cron_trigger
from controller.manifests.model import SyncWindow
from controller.manifests.types import parse_duration


def _open(window: SyncWindow, now: dt.datetime) -> bool:
    tz = zoneinfo.ZoneInfo(window.timezone)
    trigger = cron_trigger(window.schedule, tz)
    length = dt.timedelta(seconds=parse_duration(window.duration))
    start = now.astimezone(tz) - length
    fire = trigger.get_next_fire_time(None, start)
    return fire is not None and fire <= now.astimezone(tz)


def changes_allowed(windows: list[SyncWindow], now: dt.datetime | None = None) -> tuple[bool, str]:
    """(allowed, reason) for the windows of an environment at ``now`` (UTC by default)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    for window in windows:
        if window.kind == "deny" and _open(window, now):
            return False, f"inside deny window {window.schedule!r} ({window.timezone})"
    allows = [w for w in windows if w.kind == "allow"]
    if allows and not any(_open(w, now) for w in allows):
        return False, "outside every allow window"
    return True, ""
