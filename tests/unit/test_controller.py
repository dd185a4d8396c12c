"""The generic controller skeleton: entries, replacement by uid, triggers, pause and resume."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incident_commander.controller import Controller, Entry
from incident_commander.kube_api import ObjectRef
from incident_commander.metrics import OperatorMetrics
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
