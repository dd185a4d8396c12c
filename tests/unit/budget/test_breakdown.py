"""The spend breakdown, the ledger counter as read, task types and report fingerprints. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from incident_commander.budget import breakdown, ledger, usage
from incident_commander.budget.model import UsageReport


def test_the_top_ten_and_the_rest_as_other() -> None:
    values = {f"m{i:02d}": Decimal(i) for i in range(1, 15)}
    top = breakdown.top(values)
    assert list(top)[:10] == [f"m{i:02d}" for i in range(14, 4, -1)]
    assert top["other"] == Decimal(1 + 2 + 3 + 4)
    assert breakdown.top({"a": Decimal(1)}) == {"a": Decimal(1)}, "no other when nothing is left out"
    assert breakdown.top({"a": Decimal(1), "other": Decimal(2)}) == {"a": Decimal(1), "other": Decimal(2)}


def test_status_fields_round_trip() -> None:
    shown = breakdown.status_fields(
        {"model": {"m": Decimal("0.000096")}, "client": {}, "task_type": {"t": Decimal(1)}}
    )
    assert shown == {"byModel": {"m": "0.000096"}, "byClient": {}, "byTaskType": {"t": "1.00"}}
    back = breakdown.from_status({**shown, "byClient": {"bad": "x"}})
    assert back == {"model": {"m": Decimal("0.000096")}, "client": {}, "task_type": {"t": Decimal(1)}}


def test_a_counter_item_as_values() -> None:
    item = {
        "pk": {"S": "ledger#ns/b#2026-12-01T00:00:00Z"},
        "cost": {"N": "3.5"},
        "committed": {"N": "5.5"},
        "reports": {"N": "2"},
        "hold:r1-x": {"M": {"amount": {"N": "2"}, "expiresAt": {"N": "100"}, "model": {"S": "m"}}},
        "model:m": {"N": "3.5"},
        "client:p/a": {"N": "3.5"},
        "task:triage": {"N": "3.5"},
    }
    counter = ledger.parse_counter(item)
    assert (counter.cost, counter.committed, counter.held, counter.reports) == (
        Decimal("3.5"),
        Decimal("5.5"),
        Decimal(2),
        2,
    )
    assert not counter.drifted
    assert counter.by_model == {"m": Decimal("3.5")} and counter.by_client == {"p/a": Decimal("3.5")}
    assert [h.id for h in counter.expired(datetime.fromtimestamp(100, UTC))] == ["r1-x"]
    assert counter.expired(datetime.fromtimestamp(99, UTC)) == []
    legacy = ledger.parse_counter({"pk": {"S": "x"}, "cost": {"N": "1"}})
    assert legacy.committed is None and legacy.drifted
    assert not ledger.parse_counter(None).drifted


def test_task_types_are_bounded() -> None:
    known = {f"t{i}": Decimal(1) for i in range(usage.MAX_TASK_TYPES)}
    assert usage.bounded_task_type("t3", known) == "t3"
    assert usage.bounded_task_type("new", known) == "other"
    assert usage.bounded_task_type("new", {}) == "new"
    assert usage.bounded_task_type("has space", {}) == "other"
    assert usage.bounded_task_type(None, {}) is None


def test_a_fingerprint_changes_with_everything_a_report_says() -> None:
    base = UsageReport(
        model="m",
        input_tokens=1000,
        output_tokens=0,
        incident_id=None,
        idempotency_key="k",
        reported_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    same = UsageReport(
        **{**base.__dict__, "reported_at": datetime(2026, 12, 3, tzinfo=UTC), "idempotency_key": "j"}
    )
    assert usage.fingerprint(base) == usage.fingerprint(same), "the time of a retry and the key do not count"
    for change in ({"input_tokens": 7000}, {"model": "n"}, {"reservation_id": "r1-x"}, {"incident_id": "i"}):
        assert usage.fingerprint(UsageReport(**{**base.__dict__, **change})) != usage.fingerprint(base), (
            change
        )
