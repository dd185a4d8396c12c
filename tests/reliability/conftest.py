"""Fixtures of the fault matrix: one rig (control plane, serial moto, fault proxy, operator) per package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controlplane.localcluster import build_binaries
from tests.reliability.rig import LONG, Rig, rig_context


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``long_only`` tests run with IC_RELIABILITY=long (``make reliability``); otherwise they are
    deselected, not skipped, so a CI run never reports them at all."""
    if LONG:
        return
    kept = [item for item in items if item.get_closest_marker("long_only") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(scope="package")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from rig_context(build_binaries(), tmp_path_factory.mktemp("reliability"))


@pytest.fixture
def healthy(rig: Rig) -> Iterator[Rig]:
    """The rig with its operator running and no fault injected, before and after the test."""
    if rig.operator is None:
        rig.start_operator()
    rig.proxy.faults.clear()
    rig.mark_log()
    yield rig
    rig.proxy.faults.clear()
    if rig.operator is None:
        rig.start_operator()
