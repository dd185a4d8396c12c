"""One watch per resource, fanned out: every subscriber hears every event, and a failing one does
not keep the others from hearing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from incident_commander.watches import SECRETS, Watches, custom


def test_every_subscriber_of_a_resource_hears_its_events_and_nothing_else() -> None:
    watches = Watches()
    heard: list[tuple[str, str | None, str]] = []
    watches.subscribe(SECRETS, lambda t, b: heard.append(("a", t, b["metadata"]["name"])))
    watches.subscribe(SECRETS, lambda t, b: heard.append(("b", t, b["metadata"]["name"])))
    watches.subscribe(custom("things"), lambda t, b: heard.append(("c", t, b["metadata"]["name"])))
    watches.dispatch(SECRETS, "ADDED", {"metadata": {"name": "s"}})
    assert heard == [("a", "ADDED", "s"), ("b", "ADDED", "s")]


def test_a_failing_subscriber_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    watches = Watches()
    heard: list[str] = []

    def broken(event_type: str | None, body: Mapping[str, Any]) -> None:
        raise RuntimeError("bug")

    watches.subscribe(SECRETS, broken)
    watches.subscribe(SECRETS, lambda t, b: heard.append(b["metadata"]["name"]))
    watches.dispatch(SECRETS, None, {"metadata": {"namespace": "ns", "name": "s"}})
    assert heard == ["s"]
    assert "secrets event for ns/s failed" in caplog.text
