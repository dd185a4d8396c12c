from datetime import UTC, datetime, timedelta

from incident_commander.conditions import Condition, find_condition, merge_conditions
from incident_commander.timestamps import kubernetes_time

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def ready(status: str = "True", reason: str = "Reconciled") -> Condition:
    return Condition(type="Ready", status=status, reason=reason, message="m")  # type: ignore[arg-type]


def test_new_condition_is_stamped_now_with_generation() -> None:
    [cond] = merge_conditions(None, [ready()], generation=3, now=T0)
    assert cond == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "m",
        "lastTransitionTime": "2026-01-01T12:00:00Z",
        "observedGeneration": 3,
    }


def test_transition_time_kept_while_status_unchanged_even_if_reason_changes() -> None:
    first = merge_conditions(None, [ready()], generation=1, now=T0)
    second = merge_conditions(first, [ready(reason="StillFine")], generation=2, now=T1)
    assert second[0]["lastTransitionTime"] == kubernetes_time(T0)
    assert second[0]["reason"] == "StillFine" and second[0]["observedGeneration"] == 2


def test_transition_time_moves_when_status_flips() -> None:
    first = merge_conditions(None, [ready()], generation=1, now=T0)
    flipped = merge_conditions(first, [ready("False", "SecretNotFound")], generation=1, now=T1)
    assert flipped[0]["lastTransitionTime"] == kubernetes_time(T1)


def test_foreign_condition_types_are_preserved_after_ours() -> None:
    current = [
        {"type": "External", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t"}
    ]
    merged = merge_conditions(current, [ready()], generation=1, now=T0)
    assert [c["type"] for c in merged] == ["Ready", "External"]
    assert find_condition(merged, "External") == current[0]
    assert find_condition(merged, "Missing") is None


def test_timestamps_are_utc_seconds() -> None:
    eastern = datetime(2026, 1, 1, 7, 0, 0, 123456, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=-5))
    )
    assert kubernetes_time(eastern) == "2026-01-01T07:00:00Z"
