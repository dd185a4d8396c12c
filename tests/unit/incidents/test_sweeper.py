"""The sweeper's schedule: quiet policies back off, busy or touched ones are swept every tick."""

from __future__ import annotations

from incident_commander.incidents.sweeper import Schedule

KEY = ("ns", "p")


def ticks_swept(schedule: Schedule, until: int, *, pending: bool = False) -> list[int]:
    swept = []
    for tick in range(until):
        if schedule.due(KEY, tick):
            schedule.swept(KEY, tick, pending=pending)
            swept.append(tick)
    return swept


def test_a_new_policy_is_swept_at_once_then_quiet_ones_back_off_to_the_limit() -> None:
    schedule = Schedule(limit=20)
    assert ticks_swept(schedule, 100) == [0, 2, 6, 14, 30, 50, 70, 90]


def test_a_policy_with_anything_pending_is_swept_every_tick() -> None:
    assert ticks_swept(Schedule(limit=20), 10, pending=True) == list(range(10))


def test_a_write_through_this_replica_brings_a_quiet_policy_back_at_the_next_tick() -> None:
    schedule = Schedule(limit=20)
    ticks_swept(schedule, 40)  # backed off: next due at 50
    assert not schedule.due(KEY, 41)
    schedule.touched.add(KEY)
    assert schedule.due(KEY, 41)
    schedule.swept(KEY, 41, pending=False)  # a touched sweep counts as busy: the wait starts over
    assert schedule.due(KEY, 42) and not schedule.due(KEY, 41)


def test_counting_every_fourth_sweep_and_every_sweep_once_backed_off() -> None:
    schedule = Schedule(limit=20)
    counted = []
    for tick in range(13):
        if schedule.due(KEY, tick):
            counted.append(schedule.count_due(KEY, 4))
            schedule.swept(KEY, tick, pending=tick < 6)
    # Ticks 0-5 busy (counts at sweeps 0 and 4); then quiet sweeps at 6 and 8 (sixth and seventh:
    # no count), and at 12, two quiet sweeps in a row: counted.
    assert counted == [True, False, False, False, True, False, False, False, True]


def test_forgotten_policies_leave_the_schedule() -> None:
    schedule = Schedule(limit=20)
    schedule.swept(KEY, 0, pending=False)
    schedule.touched.add(("ns", "gone"))
    schedule.retain(set())
    assert schedule.paces == {} and schedule.touched == set()
