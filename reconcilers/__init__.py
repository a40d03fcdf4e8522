"""One module per AWS service, one reconciler per kind.

Importing this package registers every kind in ``reconcilers.base.KINDS``.
"""

from reconcilers import backup, budgets, cloudformation, cloudwatch, lambda_alias, sns, wafv2  # noqa: F401
from reconcilers.base import KINDS

__all__ = ["KINDS"]
