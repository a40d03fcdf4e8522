"""Sync windows: is an environment allowed to change now?

A window opens at each time its cron ``schedule`` fires and stays open for
``duration``. Changes are held inside any ``deny`` window, and outside every
``allow`` window when the environment has allow windows.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from apscheduler.triggers.cron import CronTrigger

from controller.manifests.model import SyncWindow
from controller.manifests.types import parse_duration


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(schedule: str, timezone: zoneinfo.ZoneInfo | None = None) -> CronTrigger:
    """A trigger for a standard 5-field crontab line.

    APScheduler numbers weekdays from Monday = 0; standard cron from Sunday =
    0 (and 7). Numeric weekdays are turned into names so that ``0 16 * * 5``
    means Friday, as every cron user expects.
    """
    fields = schedule.split()
    if len(fields) == 5:
        fields[4] = re.sub(r"\d+", lambda m: _DAYS[int(m.group())] if int(m.group()) <= 7 else m.group(), fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)


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
