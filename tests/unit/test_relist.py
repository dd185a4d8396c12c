"""Deletions missed while a watch was broken are found after kopf lists again (relist.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from incident_commander.relist import VanishedObjects


def body(name: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid}}


def test_objects_missing_from_a_relist_are_deleted_only_when_really_gone() -> None:
    # "renamed": same name, new object; "late": still there, only missing from this listing.
    stored = {("ns", "kept"): "u-kept", ("ns", "renamed"): "u-new", ("ns", "late"): "u-late"}
    deleted: list[str] = []

    async def on_deleted(obj: Mapping[str, Any]) -> None:
        deleted.append(obj["metadata"]["name"])

    async def scenario() -> None:
        tracker = VanishedObjects(
            plural="things",
            on_deleted=on_deleted,
            read_uid=lambda _plural, ns, name: stored.get((ns, name)),
            settle=0.05,
        )
        for name in ("kept", "gone", "renamed", "late"):
            tracker.event(None, body(name, f"u-{name}"))  # the first listing: nothing is missing
        await asyncio.sleep(0.1)
        assert deleted == []
        tracker.event("MODIFIED", body("kept", "u-kept"))
        tracker.event(None, body("kept", "u-kept"))  # a listing again, without the other three
        await asyncio.sleep(0.2)
        assert sorted(deleted) == ["gone", "renamed"]
        tracker.event("DELETED", body("kept", "u-kept"))
        tracker.event(None, body("new", "u-new"))  # nobody known is missing any more
        await asyncio.sleep(0.1)
        assert sorted(deleted) == ["gone", "renamed"]

    asyncio.run(scenario())
