"""Leader election and membership on Leases: one leader, fast hand-over, no split brain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from incident_commander.leadership import LeaderElector, Membership, Timing
from tests.support.fake_kube import FakeKube

NS = "ic-system"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Replica:
    """One replica's elector on a shared fake apiserver, with its own clocks."""

    def __init__(self, kube: FakeKube, name: str, now: list[float], retry_period: float = 2) -> None:
        self.now = now
        self.events: list[str] = []
        self.elector = LeaderElector(
            kube,  # type: ignore[arg-type]
            namespace=NS,
            name="ic",
            identity=name,
            on_started=lambda: self.events.append("started"),
            on_stopped=lambda: self.events.append("stopped"),
            timing=Timing(lease_duration=15, renew_deadline=10, retry_period=retry_period),
            clock=lambda: T0 + timedelta(seconds=self.now[0]),
            monotonic=lambda: self.now[0],
        )

    def round(self) -> bool:
        return self.elector._try_acquire_or_renew()


def test_one_replica_leads_and_the_others_only_read() -> None:
    kube, now = FakeKube(), [0.0]
    a, b = Replica(kube, "a", now), Replica(kube, "b", now)
    assert a.round() and not b.round()
    writes = list(kube.writes)
    for _ in range(5):
        now[0] += 2
        assert a.round() and not b.round()
    assert [w for w in kube.writes[len(writes) :] if "replace_lease" in w] == [
        "replace_lease ic-system/ic"
    ] * 5
    assert kube.leases[(NS, "ic")]["spec"]["holderIdentity"] == "a"


def test_a_dead_leader_is_replaced_after_the_lease_duration_as_seen_by_the_standby() -> None:
    kube, now = FakeKube(), [0.0]
    a, b = Replica(kube, "a", now), Replica(kube, "b", now)
    assert a.round() and not b.round()
    now[0] += 14  # a stops renewing (killed); b has seen the same record for 14 s
    assert not b.round()
    now[0] += 2
    assert b.round()
    spec = kube.leases[(NS, "ic")]["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


def test_a_released_lease_is_taken_at_once() -> None:
    kube, now = FakeKube(), [0.0]
    a, b = Replica(kube, "a", now), Replica(kube, "b", now)
    assert a.round() and not b.round()
    a.elector._release()
    assert b.round()


def test_a_leader_that_cannot_renew_steps_down_before_anyone_may_take_over() -> None:
    import asyncio

    kube, now = FakeKube(), [0.0]
    a = Replica(kube, "a", now, retry_period=0.01)

    async def scenario() -> None:
        task = asyncio.create_task(a.elector.run())
        await asyncio.sleep(0.05)
        assert a.elector.leading and a.events == ["started"]
        kube.reachable = False
        now[0] += 9
        await asyncio.sleep(0.05)
        assert a.elector.leading  # within the renew deadline
        now[0] += 2
        await asyncio.sleep(0.05)
        assert not a.elector.leading and a.events == ["started", "stopped"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_membership_counts_the_ready_replicas_that_renew() -> None:
    kube, clock = FakeKube(), [T0]
    ready = {"a": True, "b": True, "c": False}
    members = {
        name: Membership(
            kube,  # type: ignore[arg-type]
            namespace=NS,
            election="ic",
            identity=name,
            ready=lambda name=name: ready[name],
            clock=lambda: clock[0],
        )
        for name in ready
    }
    counts = {name: m._round() for name, m in members.items()}
    assert counts["c"] == 2 and counts["a"] >= 1
    assert {name: m._round() for name, m in members.items()} == {"a": 2, "b": 2, "c": 2}
    ready["b"] = False
    assert members["b"]._round() == 1
    clock[0] += timedelta(seconds=20)  # a stopped renewing too (gone): only live Leases count
    assert members["c"]._round() == 1  # never less than one


def test_a_leader_whose_renewal_is_older_than_the_deadline_may_not_write() -> None:
    kube, now = FakeKube(), [0.0]
    a = Replica(kube, "a", now)
    assert a.round()
    a.elector._leading, a.elector._renewed = True, now[0]
    assert a.elector.may_write()
    now[0] += 10  # paused for the renew deadline: fenced, though it still believes it leads
    assert a.elector.leading and not a.elector.may_write()
