import asyncio
import contextlib
import contextvars
import gc
import weakref

from incident_commander.metrics import OperatorMetrics
from incident_commander.workers import Dependents, ObjectWorker, PassResult


def body(**spec: object) -> dict[str, object]:
    return {"spec": spec}


def test_dependents_follow_references_as_they_change_and_go() -> None:
    dependents = Dependents("connectionRef", "budgetRef")
    dependents.track(("a", "p1"), body(connectionRef={"name": "c"}, budgetRef={"name": "b"}))
    dependents.track(("a", "p2"), body(connectionRef={"name": "c"}))
    dependents.track(("other", "p3"), body(connectionRef={"name": "c"}))
    assert dependents.of("a", "connectionRef", "c") == [("a", "p1"), ("a", "p2")]
    assert dependents.of("a", "budgetRef", "b") == [("a", "p1")]
    assert dependents.of("a", "budgetRef", "c") == []  # the kind of reference matters

    dependents.track(("a", "p1"), body(connectionRef={"name": "d"}))  # edited: new connection, no budget
    assert dependents.of("a", "connectionRef", "c") == [("a", "p2")]
    assert dependents.of("a", "connectionRef", "d") == [("a", "p1")]
    assert dependents.of("a", "budgetRef", "b") == []

    dependents.untrack(("a", "p2"))
    dependents.untrack(("a", "never-tracked"))
    assert dependents.of("a", "connectionRef", "c") == []
    assert dependents.of("other", "connectionRef", "c") == [("other", "p3")]


def test_a_body_without_the_reference_names_nothing() -> None:
    dependents = Dependents("budgetRef")
    dependents.track(("a", "p"), body(budgetRef=None))
    dependents.track(("a", "q"), {"spec": None})
    assert dependents.of("a", "budgetRef", "None") == []


class Event:
    """Stands for the watch event in kopf's handler context (weak-referenceable, unlike a dict)."""


HANDLED: contextvars.ContextVar[Event] = contextvars.ContextVar("handled")


def test_a_worker_does_not_keep_the_context_it_was_created_in() -> None:
    """kopf's handler context holds the event it handles; a worker made there lives as long as
    its object, and must not keep that event alive."""

    async def scenario() -> tuple[bool, bool]:
        passes = asyncio.Event()

        async def run_pass() -> PassResult:
            seen.append(HANDLED.get(None))
            passes.set()
            return PassResult(delay=3600)

        seen: list[Event | None] = []

        def handler() -> tuple[ObjectWorker, weakref.ref[Event]]:
            event = Event()
            HANDLED.set(event)  # as kopf sets its cause_var before calling a handler
            worker = ObjectWorker(
                kind="T",
                name="ns/obj",
                run_pass=run_pass,
                metrics=OperatorMetrics(),
                gate=asyncio.Semaphore(1),
            )
            return worker, weakref.ref(event)

        worker, event = contextvars.copy_context().run(handler)
        await asyncio.wait_for(passes.wait(), 5)
        gc.collect()
        alive = event() is not None
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker._task
        return alive, seen == [None]

    alive, clean = asyncio.run(scenario())
    assert not alive, "the worker keeps the handler's event alive"
    assert clean, "the pass saw the handler's context"
