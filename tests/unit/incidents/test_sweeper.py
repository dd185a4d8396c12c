"""The sweeper's schedule: quiet policies wait the limit, busy or touched ones are swept every tick,
and the limit follows the other replicas (a short one while they serve the API, all policies at
once when one leaves)."""

from __future__ import annotations

import asyncio
from typing import Any

from incident_commander.incidents.service import Target
from incident_commander.incidents.sweeper import IncidentSweeper, Schedule

KEY = ("ns", "p")


def ticks_swept(schedule: Schedule, until: int, *, pending: bool = False) -> list[int]:
    swept = []
    for tick in range(until):
        if schedule.due(KEY, tick):
            schedule.swept(KEY, tick, pending=pending)
            swept.append(tick)
    return swept


def test_a_new_policy_is_swept_at_once_then_a_quiet_one_every_limit() -> None:
    schedule = Schedule(limit=20)
    assert ticks_swept(schedule, 100) == [0, 20, 40, 60, 80]


def test_a_policy_with_anything_pending_is_swept_every_tick() -> None:
    assert ticks_swept(Schedule(limit=20), 10, pending=True) == list(range(10))


def test_a_write_through_this_replica_brings_a_quiet_policy_back_at_the_next_tick() -> None:
    schedule = Schedule(limit=20)
    ticks_swept(schedule, 41)  # quiet: next due at 60
    assert not schedule.due(KEY, 41)
    schedule.touched.add(KEY)
    assert schedule.due(KEY, 41)
    schedule.swept(KEY, 41, pending=False)  # a touched sweep counts as busy: the wait starts over
    assert schedule.due(KEY, 42) and not schedule.due(KEY, 41)


def test_sweep_all_makes_every_known_policy_due_at_the_next_tick() -> None:
    schedule = Schedule(limit=20)
    schedule.swept(KEY, 0, pending=False)
    assert not schedule.due(KEY, 1)
    schedule.sweep_all()
    assert schedule.due(KEY, 1)


def test_forgotten_policies_leave_the_schedule() -> None:
    schedule = Schedule(limit=20)
    schedule.swept(KEY, 0, pending=False)
    schedule.touched.add(("ns", "gone"))
    schedule.retain(set())
    assert schedule.paces == {} and schedule.touched == set()


class CountingService:
    """The sweeper's view of the incident service: records which policies it swept."""

    def __init__(self) -> None:
        self.swept: list[str] = []
        self.written: Any = None
        self.metrics: Any = None

    async def sweep(self, target: Target, *, count: bool) -> dict[str, int]:
        self.swept.append(target.name)
        return {"published": 0, "settled": 0, "unsettled": 0}


def test_the_wait_is_short_while_other_replicas_serve_and_a_leaving_one_sweeps_everything() -> None:
    service = CountingService()
    members = [frozenset({"me"})]
    target = Target(namespace="ns", name="p", spec=None)  # type: ignore[arg-type]
    sweeper = IncidentSweeper(
        service,  # type: ignore[arg-type]
        lambda: [target],
        quiet_limit=3,
        alone_limit=10,
        members=lambda: members[0],
    )

    def sweeps(ticks: range) -> list[int]:
        found = []
        for tick in ticks:
            before = len(service.swept)
            asyncio.run(sweeper.sweep_once(tick))
            if len(service.swept) > before:
                found.append(tick)
        return found

    assert sweeps(range(0, 12)) == [0, 10]  # alone: the long wait
    members[0] = frozenset({"me", "peer"})
    assert sweeps(range(12, 20)) == [15, 18]  # the sweep due at 20 comes forward to 12 + 3
    members[0] = frozenset({"me"})  # the peer left: everything at once, then the long wait again
    assert sweeps(range(20, 32)) == [20, 30]


def test_a_lone_leader_skips_the_first_sweep_of_a_table_it_created_but_not_with_peers() -> None:
    for members, first_sweeps in ((frozenset({"me"}), [10]), (frozenset({"me", "peer"}), [0, 3])):
        service = CountingService()
        sweeper = IncidentSweeper(
            service,  # type: ignore[arg-type]
            lambda: [Target(namespace="ns", name="p", spec=None)],  # type: ignore[arg-type]
            quiet_limit=3,
            alone_limit=10,
            members=lambda members=members: members,  # type: ignore[misc]
            created_here=lambda target: True,
        )
        sweeper._seen_members = members  # as start() records them
        swept = []
        for tick in range(6 if len(members) > 1 else 11):
            before = len(service.swept)
            asyncio.run(sweeper.sweep_once(tick))
            if len(service.swept) > before:
                swept.append(tick)
        assert swept == first_sweeps
