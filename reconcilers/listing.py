"""Declarative listings: one paginated ``List``/``Describe`` call per pass, shared by every resource
of a kind (what Cloud Custodian calls a resource's ``enum_spec``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.errors import error_code
from controller.kinds import Context


@dataclass(frozen=True)
class Listing:
    """Every item one paginated operation lists, by ``key``, read at most once a pass."""

    service: str
    operation: str
    """The boto3 paginator's name (``list_backup_vaults``)."""
    items: str
    """The answer's list of items (``BackupVaultList``)."""
    key: str
    """The item's field that names it (``BackupVaultName``)."""
    by_account: bool = False
    """The operation takes ``AccountId`` (Budgets)."""
    empty_when: str = ""
    """An error code that means "none" (Budgets answers ``NotFoundException`` for an account without budgets)."""
    keep: Callable[[dict[str, Any]], bool] | None = None
    """Items to keep (None: all)."""
    first_wins: bool = False
    """Where names are not unique, keep the first listed (Backup plans)."""

    def read(self, ctx: Context) -> dict[str, dict[str, Any]]:
        """The pass's listing: the first caller reads it, the others wait for it."""
        return ctx.once(f"listing:{self.service}:{self.operation}", lambda: self._fetch(ctx))

    def _fetch(self, ctx: Context) -> dict[str, dict[str, Any]]:
        params = {"AccountId": ctx.account} if self.by_account else {}
        found: dict[str, dict[str, Any]] = {}
        try:
            for page in ctx.client(self.service).get_paginator(self.operation).paginate(**params):
                for item in page.get(self.items, []):
                    if self.keep is None or self.keep(item):
                        if self.first_wins:
                            found.setdefault(item[self.key], item)
                        else:
                            found[item[self.key]] = item
        except Exception as exc:
            if self.empty_when and error_code(exc) == self.empty_when:
                return {}
            raise
        return found
