"""Leases: which replica applies to which environment.

Each replica heartbeats into the state store and holds at most its fair
share of the environments, each under a lease of ``ttl`` seconds renewed
well before it ends. A replica that stops heartbeating drops out of the live
set, and its environments go to the others once their leases expire. State writes are fenced on the lease's
epoch (the store refuses a stale writer), and a replica stops applying as
soon as its own clock says its lease may have ended, before another
replica can start (a margin of ``ttl / 5`` covers clock skew and slow calls).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import socket
import threading
import time

from controller import logs, metrics
from controller.state import StateStore

log = logs.get("lensops.leases")


def replica_id() -> str:
    """A name for this process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def assigned(environment: str, replicas: list[str]) -> str:
    """The replica an environment belongs to (rendezvous hashing: stable as replicas come and go)."""
    return max(replicas, key=lambda r: hashlib.sha256(f"{environment}|{r}".encode()).digest())


class Leases:
    """This replica's leases, renewed by ``tick`` and checked locally by ``holds``."""

    def __init__(self, store: StateStore, ttl: float, owner: str | None = None):
        self.store = store
        self.ttl = ttl
        self.owner = owner or replica_id()
        self.margin = max(1.0, ttl / 5)
        self._valid_until: dict[str, float] = {}
        self._epochs: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        """How often ``tick`` runs: renewals well inside the ttl, takeovers soon after an expiry."""
        return max(0.5, min(self.ttl / 4, 2.0))

    def holds(self, environment: str) -> bool:
        """True while this replica's lease on ``environment`` is surely still its own."""
        return self.token(environment) is not None

    def token(self, environment: str) -> tuple[str, int] | None:
        """(owner, epoch) of this replica's lease on ``environment``, while it surely holds it."""
        with self._lock:
            if time.monotonic() >= self._valid_until.get(environment, 0.0):
                return None
            return self.owner, self._epochs[environment]

    def holds_epoch(self, environment: str, epoch: int) -> bool:
        """True while this replica surely holds the lease it took under ``epoch`` (not a later one)."""
        found = self.token(environment)
        return found is not None and found[1] == epoch

    def tick(self, environments: list[str]) -> tuple[list[str], list[str]]:
        """Heartbeat, renew what we hold, give up what is over our fair share, take free ones: (gained, lost).

        Leases are sticky: a replica keeps what it holds while it lives, so a
        restart or a pause elsewhere does not move environments around. The
        fair share is ceil(environments / live replicas); rendezvous hashing
        decides which ones a replica prefers to keep and to take.
        """
        self.store.heartbeat(self.owner, self.ttl)
        replicas = self.store.live_replicas() or [self.owner]
        if self.owner not in replicas:
            replicas.append(self.owner)
        fair = math.ceil(len(environments) / len(replicas)) if environments else 0
        gained: list[str] = []
        lost: list[str] = []
        held = [env for env in environments if env in self._epochs]
        for env in list(self._epochs):
            if env not in environments:
                self.release(env)
        for env in held:
            if not self._take(env):
                self.lost(env)
                lost.append(env)
        held = [env for env in held if env in self._epochs]
        surplus = sorted(held, key=lambda e: (assigned(e, replicas) == self.owner, e))[: max(0, len(held) - fair)]
        for env in surplus:
            self.release(env)
            lost.append(env)
        wanted = sorted((e for e in environments if e not in self._epochs), key=lambda e: (assigned(e, replicas) != self.owner, e))
        for env in wanted:
            if len(self._epochs) >= fair:
                break
            if self._take(env):
                gained.append(env)
        return gained, lost

    def _take(self, environment: str) -> bool:
        """Renew or acquire one lease; fence the store when the epoch is new to us."""
        started = time.monotonic()
        epoch = self.store.acquire_lease(environment, self.owner, self.ttl)
        if epoch is None:
            return False
        with self._lock:
            self._valid_until[environment] = started + self.ttl - self.margin
            changed = self._epochs.get(environment) != epoch
            self._epochs[environment] = epoch
        if changed:
            self.store.fence(environment, self.owner, epoch)
            metrics.LEADER.labels(environment).set(1)
            log.info("lease_acquired", environment=environment, owner=self.owner, epoch=epoch)
        return True

    def release(self, environment: str) -> None:
        """Give an environment up (another replica is its owner now, it left Git, or we stop)."""
        if environment not in self._epochs:
            return
        self.store.release_lease(environment, self.owner)
        self._drop(environment)
        log.info("lease_released", environment=environment, owner=self.owner)

    def _drop(self, environment: str) -> None:
        with self._lock:
            self._valid_until.pop(environment, None)
            held = self._epochs.pop(environment, None) is not None
        self.store.unfence(environment)
        if held:  # a series dropped with its environment stays dropped
            metrics.LEADER.labels(environment).set(0)

    def lost(self, environment: str) -> None:
        """The store refused a fenced write: the lease is gone."""
        if environment in self._epochs:
            log.warning("lease_lost", environment=environment, owner=self.owner)
        self._drop(environment)

    def release_all(self) -> None:
        for env in list(self._epochs):
            try:
                self.release(env)
            except Exception as exc:  # on the way out; the lease expires anyway
                log.warning("lease_release_failed", environment=env, error=str(exc))
