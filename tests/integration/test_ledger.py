"""The usage ledger's DynamoDB writes against a real DynamoDB endpoint (moto over HTTP): reservations,
settlement, expiry on a controlled clock, idempotency, and counters written before reservations.

No control plane: these call budget/ledger.py directly, with the time passed in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from incident_commander.budget import ledger
from incident_commander.budget.model import IdempotencyConflict
from tests.support.endpoints import MotoServer, moto_client

pytestmark = pytest.mark.integration

PERIOD = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def dynamodb(moto: MotoServer) -> Iterator[tuple[Any, str]]:
    client = moto_client(moto.url, "dynamodb")
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    ledger.ensure_table(client, table)
    yield client, table
    client.delete_table(TableName=table)


def hold(amount: str, *, at: datetime = NOW, ttl: int = 600, **extra: Any) -> ledger.Hold:
    return ledger.Hold(
        id=ledger.new_reservation_id(PERIOD),
        amount=Decimal(amount),
        expires_at=int((at + timedelta(seconds=ttl)).timestamp()),
        **extra,
    )


def counter(dynamodb: tuple[Any, str], budget: str = "b") -> ledger.Counter:
    client, table = dynamodb
    return ledger.read_counter(client, namespace="ns", budget=budget, period_start=PERIOD, table=table)


def reserve(dynamodb: tuple[Any, str], held: ledger.Hold, cap: str | None, *, now: datetime = NOW) -> None:
    client, table = dynamodb
    ledger.reserve(
        client,
        namespace="ns",
        budget="b",
        period_start=PERIOD,
        hold=held,
        cap=Decimal(cap) if cap is not None else None,
        now=now,
        table=table,
    )


def record(dynamodb: tuple[Any, str], cost: str, **kwargs: Any) -> ledger.Recorded:
    client, table = dynamodb
    kwargs.setdefault("key", None)
    return ledger.record(
        client, namespace="ns", budget="b", period_start=PERIOD, cost=Decimal(cost), table=table, **kwargs
    )


def test_holds_fit_under_the_cap_in_one_conditional_write_and_are_refused_beyond(
    dynamodb: tuple[Any, str],
) -> None:
    first, second = hold("4.00", model="m", client="p/a", task_type="triage"), hold("4.00")
    reserve(dynamodb, first, "10")
    reserve(dynamodb, second, "10")
    with pytest.raises(ledger.NoRoom) as refused:
        reserve(dynamodb, hold("2.01"), "10")
    assert refused.value.counter.committed == Decimal("8.00")
    reserve(dynamodb, hold("2.00"), "10")  # exactly at the cap fits
    seen = counter(dynamodb)
    assert (seen.cost, seen.committed, seen.held, len(seen.holds)) == (
        Decimal(0),
        Decimal(10),
        Decimal(10),
        3,
    )
    assert {(h.model, h.client, h.task_type) for h in seen.holds if h.id == first.id} == {
        ("m", "p/a", "triage")
    }
    reserve(dynamodb, hold("50"), None)  # no cap: tracked, never refused
    assert counter(dynamodb).committed == Decimal(60)


def test_settling_replaces_the_hold_with_the_cost_once(dynamodb: tuple[Any, str]) -> None:
    held = hold("4.00", client="p/a", task_type="triage")
    reserve(dynamodb, held, "10")
    settle = {
        "reservation_id": held.id,
        "hold_period": PERIOD,
        "fingerprint": "f1",
        "attribution": ledger.Attribution(model="m"),
    }
    done = record(dynamodb, "1.25", **settle)
    assert (done.reservation, done.released, done.duplicate) == ("settled", Decimal("2.75"), False)
    seen = counter(dynamodb)
    assert (seen.cost, seen.committed, seen.holds) == (Decimal("1.25"), Decimal("1.25"), ())
    assert seen.by_client == {"p/a": Decimal("1.25")} and seen.by_task_type == {"triage": Decimal("1.25")}
    again = record(dynamodb, "1.25", **settle)  # a retry, without an Idempotency-Key
    assert (again.duplicate, again.reservation, again.released) == (True, "settled", Decimal("2.75"))
    with pytest.raises(IdempotencyConflict, match="reservation"):
        record(dynamodb, "9.00", **{**settle, "fingerprint": "other report"})
    assert counter(dynamodb).cost == Decimal("1.25"), "counted once"


def test_expiry_on_a_controlled_clock_releases_each_hold_exactly_once(dynamodb: tuple[Any, str]) -> None:
    client, table = dynamodb
    held = hold("8.00", ttl=60)
    reserve(dynamodb, held, "10")
    where = {"namespace": "ns", "budget": "b", "period_start": PERIOD, "table": table}
    early = NOW + timedelta(seconds=59)
    assert counter(dynamodb).expired(early) == []
    assert ledger.expire(client, holds=[held], now=early, **where) == [], "not before its time"
    with pytest.raises(ledger.NoRoom):
        reserve(dynamodb, hold("4.00", at=early), "10", now=early)
    later = NOW + timedelta(seconds=61)
    # A reservation that does not fit releases expired holds itself, then fits.
    reserve(dynamodb, hold("4.00", at=later), "10", now=later)
    seen = counter(dynamodb)
    assert (seen.committed, seen.held, len(seen.holds)) == (Decimal(4), Decimal(4), 1)
    assert ledger.expire(client, holds=[held], now=later, **where) == [], "released exactly once"
    late = record(dynamodb, "0.50", reservation_id=held.id, hold_period=PERIOD, fingerprint="f")
    assert (late.reservation, late.duplicate) == ("expired", False), "a late report is still counted"
    seen = counter(dynamodb)
    assert (seen.cost, seen.committed) == (Decimal("0.50"), Decimal("4.50"))


def test_an_idempotency_key_reused_with_another_body_is_a_conflict(dynamodb: tuple[Any, str]) -> None:
    assert not record(dynamodb, "1.00", key="k", fingerprint="a").duplicate
    assert record(dynamodb, "1.00", key="k", fingerprint="a").duplicate
    with pytest.raises(IdempotencyConflict, match="'k'"):
        record(dynamodb, "7.00", key="k", fingerprint="b")
    assert counter(dynamodb).cost == Decimal("1.00")


def test_a_counter_from_before_reservations_is_reconciled_first(dynamodb: tuple[Any, str]) -> None:
    client, table = dynamodb
    key = {"pk": {"S": ledger.counter_key("ns", "b", PERIOD)}}
    client.put_item(TableName=table, Item={**key, "cost": {"N": "6"}, "reports": {"N": "3"}})
    assert counter(dynamodb).drifted
    with pytest.raises(ledger.NoRoom):
        reserve(dynamodb, hold("5"), "10")  # 6 settled + 5 > 10: refused, and reconciled meanwhile
    reserve(dynamodb, hold("4"), "10")
    record(dynamodb, "1.00")
    seen = counter(dynamodb)
    assert (seen.cost, seen.committed, seen.held) == (Decimal(7), Decimal(11), Decimal(4))
    assert not seen.drifted
    # An older writer adds cost without committed (a rolling upgrade): the leader's repair.
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="ADD #c :c",
        ExpressionAttributeNames={"#c": "cost"},
        ExpressionAttributeValues={":c": {"N": "2"}},
    )
    drifted = counter(dynamodb)
    assert drifted.drifted
    where = {"namespace": "ns", "budget": "b", "period_start": PERIOD, "table": table}
    assert ledger.reconcile(client, counter=drifted, **where)
    assert counter(dynamodb).committed == Decimal(13)
    assert not ledger.reconcile(client, counter=drifted, **where), "conditional on what it read"


def test_reservation_ids_name_their_period_and_nothing_else_parses() -> None:
    rid = ledger.new_reservation_id(PERIOD)
    assert ledger.reservation_period(rid) == PERIOD
    for bad in ("", "r1-xyz", "hold:1", f"{rid}x", "r" + "9" * 13 + "-" + "a" * 32):
        assert ledger.reservation_period(bad) is None
