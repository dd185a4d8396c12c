from __future__ import annotations

import logging

import pytest

from incident_commander.telemetry.sampled_log import SampledLog


def test_lines_are_limited_per_key_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = SampledLog(logging.getLogger("sampled"), per_window=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="sampled"):
        for i in range(10):
            log.warning("a", "line a %d", i)
        log.warning("b", "line b")
        assert [r.getMessage() for r in caplog.records] == ["line a 0", "line a 1", "line a 2", "line b"]
        now[0] = 61.0
        log.warning("a", "line a again")
    assert caplog.records[-2].getMessage() == "7 more a lines were suppressed in 61s (rate-limited logging)"
    assert caplog.records[-1].getMessage() == "line a again"
