from datetime import UTC, datetime, timedelta

from incident_commander.conditions import Condition
from incident_commander.status import plan_status, transition_events

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


def test_one_cause_flipping_ready_and_its_sub_condition_is_one_event() -> None:
    """An IncidentPolicy's Ready=False copies its failing StorageReady's reason and message: one
    Event names both flips; the recovery's different messages stay separate Events."""
    ready = Condition(type="Ready", status="True", reason="Reconciled", message="in place")
    storage = Condition(type="StorageReady", status="True", reason="Provisioned", message="3 resources")
    first = plan_status(current=None, generation=1, conditions=[ready, storage], now=T0)
    assert [(e.type, e.reason) for e in transition_events(first)] == [("Normal", "Reconciled")]
    assert first.patch is not None
    cause = "AwsConnection emulator: EndpointUnreachable"
    failing = [
        Condition(type="Ready", status="False", reason="ConnectionNotReady", message=cause),
        Condition(type="StorageReady", status="False", reason="ConnectionNotReady", message=cause),
    ]
    down = plan_status(current=first.patch, generation=1, conditions=failing, now=T0)
    assert [(e.type, e.reason, e.message) for e in transition_events(down)] == [
        ("Warning", "ConnectionNotReady", f"Ready=False, StorageReady=False: {cause}")
    ]
    assert down.patch is not None
    up = plan_status(current={**first.patch, **down.patch}, generation=1, conditions=[ready, storage], now=T0)
    assert [(e.reason, e.message) for e in transition_events(up)] == [
        ("Reconciled", "Ready=True: in place"),
        ("Provisioned", "StorageReady=True: 3 resources"),
    ]


def test_flips_with_the_same_message_but_opposite_news_stay_apart() -> None:
    """Degraded=True is bad news, Ready=True good news: same reason and message, two Events."""
    current = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "X", "message": "m"},
            {"type": "Degraded", "status": "False", "reason": "X", "message": "m"},
        ]
    }
    plan = plan_status(
        current=current,
        generation=0,
        conditions=[
            Condition(type="Ready", status="True", reason="X", message="m"),
            Condition(type="Degraded", status="True", reason="X", message="m"),
        ],
        now=T0,
    )
    assert sorted((e.type, e.message) for e in transition_events(plan)) == [
        ("Normal", "Ready=True: m"),
        ("Warning", "Degraded=True: m"),
    ]
