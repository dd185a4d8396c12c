"""BudgetPolicy's watch subscription: its own objects.

Plain watch events, like the other kinds: the controller compares generations and the break-glass
annotation itself, so kopf writes no progress annotations and adds no finalizer (nothing in AWS
belongs to one budget; the shared ledger table is kept).
"""

from __future__ import annotations

from incident_commander.kinds.budgetpolicy.controller import PLURAL, BudgetController
from incident_commander.watches import Watches, custom


def subscribe(watches: Watches, budgets: BudgetController) -> None:
    watches.subscribe(custom(PLURAL), budgets.watch_event)
    watches.track_deletions(custom(PLURAL))
