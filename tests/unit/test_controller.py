"""The generic controller skeleton: entries, replacement by uid, triggers, pause and resume, pass
outcomes and the conditions exported as metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import generate_latest

from incident_commander.conditions import Condition
from incident_commander.controller import Controller, Entry
from incident_commander.kube_api import ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.status import Assessment
from tests.support.fake_kube import FakeKube


@dataclass(kw_only=True)
class Thing(Entry):
    passes: int = 0


class Things(Controller[Thing]):
    kind = "Thing"
    plural = "things"
    references = ("otherRef",)

    def __init__(self) -> None:
        super().__init__(kube=FakeKube(), metrics=OperatorMetrics())  # type: ignore[arg-type]
        self.forgotten_uids: list[str] = []

    def new_entry(self, ref: ObjectRef, body: Mapping[str, Any], status: dict[str, Any]) -> Thing:
        return Thing(ref=ref, body=body, status=status)

    async def run_pass(self, entry: Thing) -> float:
        entry.passes += 1
        return 3600.0

    def forgotten(self, entry: Thing) -> None:
        self.forgotten_uids.append(entry.ref.uid)


def body(uid: str = "u1", generation: int = 1, other: str = "o") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "t", "uid": uid, "generation": generation},
        "spec": {"otherRef": {"name": other}},
        "status": {"observedGeneration": generation},
    }


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_a_pass_runs_at_first_sight_and_again_only_when_the_trigger_changes() -> None:
    async def scenario() -> None:
        things = Things()
        things.observe(body())
        await settle()
        thing = things.entry("ns", "t")
        assert thing is not None and thing.passes == 1 and thing.status == {"observedGeneration": 1}
        things.observe(body())  # same generation: a status echo, no pass
        await settle()
        assert thing.passes == 1
        things.observe(body(generation=2))
        await settle()
        assert thing.passes == 2
        await things.close()

    asyncio.run(scenario())


def test_a_new_object_under_the_same_name_replaces_the_entry() -> None:
    async def scenario() -> None:
        things = Things()
        things.observe(body(uid="u1"))
        things.observe(body(uid="u2"))
        await settle()
        thing = things.entry("ns", "t")
        assert thing is not None and thing.ref.uid == "u2" and things.forgotten_uids == ["u1"]
        things.forget("ns", "t", uid="u1")  # a late deletion of the old object changes nothing
        assert things.entry("ns", "t") is thing
        things.forget("ns", "t", uid="u2")
        assert things.entry("ns", "t") is None and things.forgotten_uids == ["u1", "u2"]
        await things.close()

    asyncio.run(scenario())


def test_a_dependency_change_wakes_its_users_only() -> None:
    async def scenario() -> None:
        things = Things()
        things.observe(body(other="a"))
        await settle()
        thing = things.entry("ns", "t")
        assert thing is not None
        things.wake_referencing("otherRef", "ns", "b")
        await settle()
        assert thing.passes == 1
        things.wake_referencing("otherRef", "ns", "a")
        await settle()
        assert thing.passes == 2
        await things.close()

    asyncio.run(scenario())


def test_a_paused_controller_follows_its_objects_but_runs_nothing_until_resumed() -> None:
    async def scenario() -> None:
        things = Things()
        things.pause()
        things.observe(body())
        things.observe(body(generation=2))
        await settle()
        thing = things.entry("ns", "t")
        assert thing is not None and thing.passes == 0 and thing.worker is None and thing.generation == 2
        things.resume()
        await settle()
        assert thing.passes == 1
        things.pause()
        assert thing.worker is None
        await things.close()

    asyncio.run(scenario())


def test_a_failing_subscriber_does_not_keep_the_others_from_hearing() -> None:
    things = Things()
    heard: list[str] = []

    def broken(namespace: str, name: str) -> None:
        raise RuntimeError("subscriber bug")

    things.subscribe(broken)
    things.subscribe(lambda namespace, name: heard.append(name))
    things.notify("ns", "t")
    assert heard == ["t"]


class Judged(Things):
    """A kind whose pass assesses Ready from the spec, or defers: ``spec.verdict``."""

    kind = "Judged"
    condition_types = ("Ready", "Synced")

    async def run_pass(self, entry: Thing) -> float:
        entry.passes += 1
        verdict = entry.body["spec"].get("verdict")
        if verdict == "defer":
            return self.defer(entry, 1.0)
        if verdict == "raise":
            raise RuntimeError("the pass fails")
        conditions = [
            Condition(type="Ready", status=verdict, reason="R", message="m"),
            Condition(type="Synced", status="True", reason="S", message="m"),
        ]
        await self.write_status(entry, Assessment(conditions=conditions))
        return 3600.0


def judged(verdict: str, generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "j", "uid": "u1", "generation": generation},
        "spec": {"verdict": verdict},
        "status": status or {},
    }


def test_a_pass_outcome_says_what_it_came_to() -> None:
    """success only when the pass leaves the object Ready; not_ready when Ready is False or
    Unknown; deferred when it could not assess; error when it raised."""

    async def scenario() -> list[str]:
        things = Judged()
        things.pause()  # the test runs the passes itself
        outcomes = []
        for generation, verdict in enumerate(("True", "False", "Unknown", "defer"), start=1):
            things.observe(judged(verdict, generation))
            thing = things.entry("ns", "j")
            assert thing is not None
            outcomes.append((await things.reconcile(thing)).outcome)
        await things.close()
        return outcomes

    assert asyncio.run(scenario()) == ["success", "not_ready", "not_ready", "deferred"]


def test_the_worker_counts_every_outcome_from_zero() -> None:
    async def scenario() -> Judged:
        things = Judged()
        things.observe(judged("False"))
        await settle()
        things.observe(judged("raise", generation=2))
        await settle()
        await things.close()
        return things

    things = asyncio.run(scenario())

    def count(outcome: str) -> float | None:
        return things.metrics.registry.get_sample_value(
            "incident_commander_reconciliations_total", {"kind": "Judged", "outcome": outcome}
        )

    assert {o: count(o) for o in ("success", "not_ready", "deferred", "error")} == {
        "success": 0,
        "not_ready": 1,
        "deferred": 0,
        "error": 1,
    }


def test_conditions_are_exported_from_the_status_this_replica_knows_and_dropped_on_deletion() -> None:
    """The leader exports what it writes; a standby what the leader wrote (its watch); only the
    kind's own condition types; nothing once the object is gone."""

    async def scenario() -> None:
        leader, standby = Judged(), Judged()
        standby.pause()
        leader.observe(judged("False"))
        await settle()
        written = leader.entry("ns", "j")
        assert written is not None
        stored = {
            **written.status,
            "conditions": [*written.status["conditions"], {"type": "Foreign", "status": "True"}],
        }
        standby.observe(judged("False", status=stored))
        for replica in (leader, standby):
            assert value(replica, "Ready", "False") == 1 and value(replica, "Ready", "True") == 0
            assert value(replica, "Synced", "True") == 1
            assert value(replica, "Foreign", "True") is None
        flipped = {**stored, "conditions": [{**stored["conditions"][0], "status": "True"}]}
        standby.observe(judged("False", status=flipped))  # the leader's next write, as watched
        assert value(standby, "Ready", "True") == 1 and value(standby, "Synced", "True") is None
        for replica in (leader, standby):
            replica.forget("ns", "j")
            text = generate_latest(replica.metrics.registry).decode()
            assert 'name="j"' not in text
            await replica.close()

    asyncio.run(scenario())


def value(things: Things, condition: str, status: str) -> float | None:
    labels = {"kind": things.kind, "namespace": "ns", "name": "j", "condition": condition, "status": status}
    return things.metrics.registry.get_sample_value("incident_commander_status_condition", labels)
