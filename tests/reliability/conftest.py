"""Fixtures of the fault matrix: one rig (control plane, serial moto, fault proxy, operator) per package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controlplane.localcluster import build_binaries
from tests.reliability.rig import Rig, rig_context


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
