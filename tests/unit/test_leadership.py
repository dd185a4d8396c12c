"""Leader election and membership on Leases: one leader, fast hand-over, no split brain."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from incident_commander.kube_api import KubeApi
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


def test_membership_lists_the_ready_replicas_that_renew() -> None:
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
    assert counts["c"] == {"a", "b"} and "a" in counts["a"]
    assert {name: m._round() for name, m in members.items()} == {name: {"a", "b"} for name in "abc"}
    ready["b"] = False
    assert members["b"]._round() == {"a"}
    clock[0] += timedelta(seconds=20)  # a stopped renewing too (gone): only live Leases count
    assert members["c"]._round() == frozenset()


def test_membership_counts_at_least_this_replica() -> None:
    kube = FakeKube()
    member = Membership(
        kube,  # type: ignore[arg-type]
        namespace=NS,
        election="ic",
        identity="alone",
        ready=lambda: False,
        timing=Timing(retry_period=0.01),
    )

    async def scenario() -> None:
        task = asyncio.create_task(member.run())
        await asyncio.sleep(0.05)
        assert member.live == frozenset() and member.members == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_leader_whose_renewal_is_older_than_the_deadline_may_not_write() -> None:
    kube, now = FakeKube(), [0.0]
    a = Replica(kube, "a", now)
    assert a.round()
    a.elector._leading, a.elector._renewed = True, now[0]
    assert a.elector.may_write()
    now[0] += 10  # paused for the renew deadline: fenced, though it still believes it leads
    assert a.elector.leading and not a.elector.may_write()


class LeaseServer:
    """The Lease endpoints of an apiserver over real HTTP on loopback, that can stop answering
    while keeping connections open: a partition that drops packets, not one that refuses them."""

    PREFIX = "/apis/coordination.k8s.io/v1/namespaces/"

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.silent = threading.Event()
        self.stopping = threading.Event()
        self.version = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                if outer.silent.is_set():
                    outer.stopping.wait()  # the request arrived; no answer ever leaves
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def _store(self, lease: dict[str, Any]) -> dict[str, Any]:
                outer.version += 1
                lease["metadata"]["resourceVersion"] = str(outer.version)
                outer.leases[lease["metadata"]["name"]] = lease
                return lease

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[1]
                found = outer.leases.get(name)
                self._answer(200, found) if found else self._answer(404, {"kind": "Status", "code": 404})

            def do_POST(self) -> None:
                self._answer(201, self._store(self._body()))

            def do_PUT(self) -> None:
                body = self._body()
                current = outer.leases.get(body["metadata"]["name"])
                if current and current["metadata"]["resourceVersion"] != body["metadata"].get(
                    "resourceVersion"
                ):
                    self._answer(409, {"kind": "Status", "code": 409})
                else:
                    self._answer(200, self._store(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kube(self) -> KubeApi:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return KubeApi(client.ApiClient(configuration)).without_retries()  # as operator_app does

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_leader_whose_apiserver_stops_answering_steps_down_within_its_deadline() -> None:
    """Over real HTTP: the apiserver keeps the connections but answers nothing. Every Lease request
    gives up after the timing's request timeout, once (no urllib3 retries), so the leader notices
    and steps down within the renew deadline (plus one round), before a standby may take over;
    without timeouts its election loop would wait for TCP to give up, minutes later, leading all
    along, and with urllib3's three retries each request would take four timeouts."""
    server = LeaseServer()
    timing = Timing(lease_duration=3, renew_deadline=2, retry_period=0.2)
    assert timing.request_timeout == 0.5
    events: list[str] = []
    elector = LeaderElector(
        server.kube(),
        namespace=NS,
        name="ic",
        identity="a",
        on_started=lambda: events.append("started"),
        on_stopped=lambda: events.append("stopped"),
        timing=timing,
    )

    async def scenario() -> float:
        task = asyncio.create_task(elector.run())
        try:
            for _ in range(100):
                if elector.leading:
                    break
                await asyncio.sleep(0.05)
            assert elector.leading and server.leases["ic"]["spec"]["holderIdentity"] == "a"
            server.silent.set()
            silenced = time.monotonic()
            while elector.leading and time.monotonic() - silenced < 10:
                await asyncio.sleep(0.05)
            return time.monotonic() - silenced
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # its release times out too

    try:
        took = asyncio.run(scenario())
    finally:
        server.stop()
    assert events == ["started", "stopped"]
    # The last renewal was at most a retry period before the silence; then rounds of one timed-out
    # request (the get) until the deadline has passed.
    assert timing.renew_deadline - timing.retry_period <= took <= timing.renew_deadline + 2 * 2 * 0.5 + 0.5, (
        took
    )
    assert not elector.may_write()
