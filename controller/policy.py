"""One pass policy for the CLI and the daemon: execute a pass, or only plan it, and why.

Where it stands in the house: asked by ``runner.py`` (``lensops plan`` and
``apply``) and ``daemon.py`` before every pass; it reads the environment's
record, its manifests, the sync windows and the lease, and changes nothing.
In order, a pass only plans when:

1. a plan was asked for;
2. the revision is held: a failed bake's rollback is still to finish, its
   content failed a bake (until a commit changes the environment's content),
   or the rollback runbook holds the environment;
3. another replica holds the environment's lease (``lensops apply`` beside a daemon, with
   either store: SQLite records its daemon's leases in its file too);
4. a sync window is closed (``--force-window`` overrides it for ``apply``);
5. the daemon resyncs content it has applied already and ``sync.selfHeal`` is off.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Literal

from controller.engine import content_changed
from controller.health import ROLLING_BACK, held
from controller.manifests.model import EnvironmentDesired
from controller.state import EnvironmentRecord
from controller.windows import changes_allowed

HOLD_KEY = "hold"
"""Where an environment's record keeps the rollback runbook's hold."""

Mode = Literal["plan", "apply", "sync"]
"""``plan`` and ``apply``: the CLI's commands; ``sync``: the daemon's passes."""


@dataclass(frozen=True)
class PassPolicy:
    """What a pass of one environment does."""

    execute: bool
    new: bool
    """The environment's content is not the one it last applied: a new revision (not asked for a plan)."""
    trigger: str
    why: str = ""
    """Why the pass only plans, when it was asked to apply ('' otherwise)."""
    refused: bool = False
    """``lensops apply`` was refused (held, or a daemon holds the lease): an error, not a plan."""
    holder: str = ""
    """The replica whose lease refused this ``lensops apply`` ('' otherwise); ``why`` then says it whole."""


def runbook_hold(record: EnvironmentRecord | None, env: EnvironmentDesired) -> dict[str, Any] | None:
    """The rollback runbook's hold on ``env``, while the environment's manifests are the ones it was
    asked from (a commit that changes them, the RunbookRun's removal included, ends it; a commit
    elsewhere in the repository does not)."""
    hold = record.data.get(HOLD_KEY) if record else None
    if not hold:
        return None
    return hold if hold.get("after_digest", hold.get("after")) in (env.manifests_digest, env.revision) else None


def rolling_back(record: EnvironmentRecord | None) -> bool:
    """A failed bake's rollback has not run to its end yet (the next bake check takes it up)."""
    return bool(record and record.data.get(ROLLING_BACK))


def decide(
    env: EnvironmentDesired,
    record: EnvironmentRecord | None,
    mode: Mode,
    *,
    force_window: bool = False,
    lease_holder: tuple[str, float] | None = None,
    reason: str = "revision",
    now: dt.datetime | None = None,
) -> PassPolicy:
    """The policy of one pass of ``env``; ``lease_holder`` is another replica holding its lease and
    when that lease ends, ``reason`` why the daemon runs the pass (the trigger a new revision is recorded with)."""
    if mode == "plan":
        return PassPolicy(False, False, "cli")
    new = content_changed(env, record)
    trigger = "cli" if mode != "sync" else (reason if new else "resync")
    refuse = mode == "apply"
    why = "the rollback of a failed bake is in progress" if rolling_back(record) else held(record, env)
    if not why and (hold := runbook_hold(record, env)) is not None:
        why = f"held on {hold['revision'][:12]} by the rollback runbook until a commit changes the environment's manifests"
    if why:
        return PassPolicy(False, new, trigger, why, refused=refuse)
    if lease_holder:
        owner, until = lease_holder
        ends = dt.datetime.fromtimestamp(until, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        why = f"{env.name} is held by replica {owner} (lease until {ends}): apply through Git, or stop that daemon"
        return PassPolicy(False, new, trigger, why, refused=refuse, holder=owner)
    if not force_window:
        allowed, closed = changes_allowed(env.spec.sync.windows, now)
        if not allowed:
            return PassPolicy(False, new, trigger, closed)
    if mode == "sync" and not new and not env.spec.sync.selfHeal:
        return PassPolicy(False, new, trigger, "resync of the applied revision; sync.selfHeal is off")
    return PassPolicy(True, new, trigger)


def live_lease_holder(store: Any, environment: str, me: str = "") -> tuple[str, float] | None:
    """The replica other than ``me`` that holds ``environment``'s lease now, and when its lease
    ends (it is renewed well before), or None."""
    found = store.lease_holder(environment)
    if found is None:
        return None
    owner, _epoch, expires = found
    return (owner, expires) if owner and owner != me and expires > time.time() else None
