"""The bridge's effective routing: cached per policy, recomputed whenever the spec or the budget's
state is a new object."""

from __future__ import annotations

from typing import Any

from incident_commander.api.budget_bridge import BudgetBridge
from incident_commander.api.directory import PolicyView
from incident_commander.budget.model import BudgetState
from incident_commander.kinds.incidentpolicy.spec import parse_policy_spec
from tests.unit.budget.test_enforcement import state


class Budgets:
    """The one method of BudgetSource that effective_for reads."""

    def __init__(self) -> None:
        self.current: BudgetState | None = None

    def state(self, namespace: str, name: str) -> BudgetState | None:
        return self.current


def view(**routing: Any) -> PolicyView:
    spec = parse_policy_spec(
        {
            "connectionRef": {"name": "conn"},
            "budgetRef": {"name": "b"},
            "modelRouting": {"simpleModel": "small", "complexModel": "large", **routing},
        }
    )
    return PolicyView(namespace="ns", name="p", spec=spec)


def test_effective_routing_follows_every_new_spec_and_budget_state() -> None:
    budgets = Budgets()
    bridge = BudgetBridge(budgets)  # type: ignore[arg-type]
    policy = view()
    first = bridge.effective_for(policy)
    assert first.mode == "Normal" and first.complex_model == "large"
    assert bridge.effective_for(policy) is first  # nothing changed: the same answer, not recomputed

    budgets.current = state("Critical", "Downgrade", "Downgrade")
    downgraded = bridge.effective_for(policy)
    assert downgraded.mode == "Downgraded" and downgraded.complex_model == "small"

    budgets.current = state("Exceeded", "Halt", "Halt")
    assert bridge.effective_for(policy).halted

    budgets.current = None
    renamed = view(complexModel="larger")
    assert bridge.effective_for(renamed).complex_model == "larger"
    assert bridge.effective_for(policy).complex_model == "large"  # an older spec object: recomputed
