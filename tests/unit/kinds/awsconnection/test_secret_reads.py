"""SharedSecretReads: which callers share a read of a Secret, and when a read is made afresh."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from incident_commander.kinds.awsconnection.secret_reads import SharedSecretReads
from incident_commander.kube_api import SecretData


@dataclass
class Reader:
    """Counts reads; each read waits for ``gate`` so callers can pile up while it is under way."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    reads: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, namespace: str, name: str) -> SecretData | None:
        self.reads.append((namespace, name))
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("apiserver away")
        return SecretData(resource_version=str(len(self.reads)), data={"ns": namespace.encode()})


def test_callers_during_one_read_share_it() -> None:
    async def scenario() -> None:
        reader = Reader()
        shared = SharedSecretReads(reader)
        waiting = [asyncio.create_task(shared.get("team", "keys")) for _ in range(50)]
        await asyncio.sleep(0)
        reader.gate.set()
        results = await asyncio.gather(*waiting)
        assert reader.reads == [("team", "keys")]
        assert {r.resource_version for r in results if r} == {"1"}
        assert (await shared.get("team", "keys")) == results[0]  # still held afterwards
        assert len(reader.reads) == 1

    asyncio.run(scenario())


def test_a_watch_event_makes_the_next_caller_read_afresh() -> None:
    async def scenario() -> None:
        reader = Reader()
        reader.gate.set()
        shared = SharedSecretReads(reader)
        first = await shared.get("team", "keys")
        shared.changed("team", "keys")
        second = await shared.get("team", "keys")
        assert reader.reads == [("team", "keys")] * 2
        assert first and second and first.resource_version != second.resource_version

    asyncio.run(scenario())


def test_namespaces_never_share_a_read() -> None:
    async def scenario() -> None:
        reader = Reader()
        reader.gate.set()
        shared = SharedSecretReads(reader)
        mine, theirs = await asyncio.gather(shared.get("team", "keys"), shared.get("other", "keys"))
        assert sorted(reader.reads) == [("other", "keys"), ("team", "keys")]
        assert mine and theirs and mine.data["ns"] == b"team" and theirs.data["ns"] == b"other"

    asyncio.run(scenario())


def test_an_old_read_is_not_shared() -> None:
    async def scenario() -> None:
        now = [0.0]
        reader = Reader()
        reader.gate.set()
        shared = SharedSecretReads(reader, max_age=30.0, clock=lambda: now[0])
        await shared.get("team", "keys")
        now[0] = 29.9
        await shared.get("team", "keys")
        assert len(reader.reads) == 1
        now[0] = 30.0
        await shared.get("team", "keys")
        assert len(reader.reads) == 2

    asyncio.run(scenario())


def test_a_failed_read_fails_its_waiters_and_is_not_kept() -> None:
    async def scenario() -> None:
        reader = Reader(fail=True)
        shared = SharedSecretReads(reader)
        waiting = [asyncio.create_task(shared.get("team", "keys")) for _ in range(3)]
        await asyncio.sleep(0)
        reader.gate.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        assert len(shared) == 0
        reader.fail = False
        assert await shared.get("team", "keys") is not None
        assert len(reader.reads) == 2

    asyncio.run(scenario())


def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_for() -> None:
    async def scenario() -> None:
        reader = Reader()
        shared = SharedSecretReads(reader)
        leaving, staying = (asyncio.create_task(shared.get("team", "keys")) for _ in range(2))
        await asyncio.sleep(0)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        reader.gate.set()
        assert (await staying) is not None
        assert len(reader.reads) == 1

    asyncio.run(scenario())


def test_a_forgotten_secret_is_not_held() -> None:
    async def scenario() -> None:
        reader = Reader()
        reader.gate.set()
        shared = SharedSecretReads(reader)
        await shared.get("team", "keys")
        shared.forget("team", "keys")
        assert len(shared) == 0

    asyncio.run(scenario())
