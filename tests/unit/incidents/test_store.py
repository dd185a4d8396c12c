"""The store's pure parts: the transaction a change becomes, cursors, sortable times, values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from incident_commander.incidents import model
from incident_commander.incidents.model import Actor, Resolution
from incident_commander.incidents.store import (
    IncidentStore,
    build_update,
    decode_cursor,
    encode_cursor,
    from_item,
    jsonable,
    sortable_time,
    to_item,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
A = Actor(client="agent-a", role="responder")
STORE = IncidentStore(dynamodb=None, kinesis=None, table="t", stream="s")


def test_an_open_is_one_transaction_of_the_item_its_dedup_key_its_audit_entry_and_its_outbox() -> None:
    change = model.plan_open(incident_id="inc-1", title="x", severity="high", actor=A, now=T0, dedup_key="k")
    items = STORE.transaction(change)
    assert [next(iter(i)) for i in items] == ["Put", "Put", "Put", "Update"]
    head, dedup, audit, outbox = (next(iter(i.values())) for i in items)
    assert head["ConditionExpression"] == "attribute_not_exists(pk)"
    assert dedup["Item"]["pk"] == {"S": "D#k"} and dedup["ConditionExpression"] == "attribute_not_exists(pk)"
    assert (
        audit["Item"]["sk"] == {"S": "T#0000000001"}
        and audit["ConditionExpression"] == "attribute_not_exists(pk)"
    )
    assert outbox["ExpressionAttributeValues"][":v"] == {"N": "1"}
    stale = STORE.transaction(change, dedup_stale="inc-0")
    assert stale[1]["Put"]["ConditionExpression"] == "incidentId = :stale"


def test_a_transition_is_conditional_on_the_version_it_was_planned_from() -> None:
    incident = model.plan_open(
        incident_id="inc-1", title="x", severity="high", actor=A, now=T0, dedup_key="k"
    ).incident
    change = model.plan_resolve(incident, A, T0 + timedelta(minutes=5), Resolution(code="fixed", summary="y"))
    items = STORE.transaction(change)
    kinds = [next(iter(i)) for i in items]
    assert kinds == ["Update", "Put", "Update", "Delete", "Put"]  # head, audit, outbox, dedup key, resolution
    head = items[0]["Update"]
    assert head["ConditionExpression"] == "#version = :expected"
    assert head["ExpressionAttributeNames"]["#version"] == "version"
    assert head["ExpressionAttributeValues"][":expected"] == {"N": "1"}
    assert items[1]["Put"]["Item"]["sk"] == {"S": "T#0000000002"}
    assert items[3]["Delete"]["Key"]["pk"] == {"S": "D#k"}
    assert items[4]["Put"]["Item"]["status"] == {"S": model.RESOLVED_MARKER}
    assert Decimal(items[4]["Put"]["Item"]["seconds"]["N"]) == 300


def test_update_paths_reuse_names_and_nest() -> None:
    update = build_update({"artifacts.art-1": {"id": "art-1"}, "version": 2}, ("status",), expected=1)
    assert update.expression == "SET #n0.#n1 = :v0, #n2 = :v1 REMOVE #n3"
    assert update.names == {"#n0": "artifacts", "#n1": "art-1", "#n2": "version", "#n3": "status"}
    assert update.values[":expected"] == {"N": "1"}


def test_cursors_are_opaque_and_only_ours_decode() -> None:
    sort_key = "I#inc-01a23464b0e33cb4b3a258"
    assert decode_cursor(encode_cursor(sort_key)) == sort_key
    for forged in (
        "garbage",
        encode_cursor("T#0000000001"),
        encode_cursor("I#inc-x y"),
        "%%%",
        encode_cursor("I#inc-" + "a" * 80),
    ):
        assert decode_cursor(forged) is None


def test_times_sort_as_strings_and_values_survive_dynamodb() -> None:
    times = [T0, T0 + timedelta(microseconds=1), T0 + timedelta(seconds=1), T0 + timedelta(days=1)]
    assert [sortable_time(t) for t in times] == sorted(sortable_time(t) for t in times)
    value = {"a": 1.5, "b": [1, {"c": None, "d": True}], "e": "x", "f": None}
    item = to_item({"v": value})
    assert jsonable(from_item(item)["v"]) == {"a": 1.5, "b": [1, {"d": True}], "e": "x"}
    assert jsonable(Decimal("3")) == 3 and isinstance(jsonable(Decimal("3")), int)
