"""Cron lines as users write them, read by APScheduler."""

from __future__ import annotations

import re
import zoneinfo

from apscheduler.triggers.cron import CronTrigger

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
