from datetime import UTC, datetime, timedelta

from incident_commander.conditions import Condition
from incident_commander.status import plan_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
READY = Condition(type="Ready", status="True", reason="Reconciled", message="ok")
NOT_READY = Condition(type="Ready", status="False", reason="SecretNotFound", message="secret x missing")


def test_first_reconciliation_writes_everything_and_reports_a_transition() -> None:
    plan = plan_status(current=None, generation=1, conditions=[READY], fields={"accountId": "1"}, now=T0)
    assert plan.patch is not None
    assert plan.patch["observedGeneration"] == 1
    assert plan.patch["accountId"] == "1"
    assert [(t.type, t.previous, t.current) for t in plan.transitions] == [("Ready", None, "True")]


def test_unchanged_status_plans_no_write_and_no_event() -> None:
    first = plan_status(current=None, generation=1, conditions=[READY], fields={"accountId": "1"}, now=T0)
    assert first.patch is not None
    later = plan_status(
        current=first.patch,
        generation=1,
        conditions=[READY],
        fields={"accountId": "1"},
        now=T0 + timedelta(hours=1),
    )
    assert later.patch is None
    assert later.transitions == []


def test_new_generation_alone_is_written_without_an_event() -> None:
    first = plan_status(current=None, generation=1, conditions=[READY], now=T0)
    assert first.patch is not None
    plan = plan_status(current=first.patch, generation=2, conditions=[READY], now=T0)
    assert plan.patch is not None
    assert plan.patch["observedGeneration"] == 2
    assert plan.patch["conditions"][0]["observedGeneration"] == 2
    assert plan.patch["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert plan.transitions == []


def test_flip_is_reported_with_its_reason() -> None:
    first = plan_status(current=None, generation=1, conditions=[READY], now=T0)
    assert first.patch is not None
    plan = plan_status(current=first.patch, generation=1, conditions=[NOT_READY], now=T0)
    [transition] = plan.transitions
    assert (transition.previous, transition.current, transition.reason) == ("True", "False", "SecretNotFound")


def test_none_field_value_removes_the_field() -> None:
    plan = plan_status(
        current={"arn": "a", "observedGeneration": 0},
        generation=0,
        conditions=[],
        fields={"arn": None},
        now=T0,
    )
    assert plan.patch == {"arn": None}
