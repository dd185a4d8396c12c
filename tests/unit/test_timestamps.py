from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from incident_commander.timestamps import kubernetes_time, parse_time, parse_time_or_none, precise_time

MOMENT = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))


def test_both_renderings_are_utc_with_a_z() -> None:
    assert kubernetes_time(MOMENT) == "2026-12-01T13:30:15Z"
    assert precise_time(MOMENT) == "2026-12-01T13:30:15.123456Z"
    assert precise_time(MOMENT.replace(microsecond=0)) == "2026-12-01T13:30:15Z"


def test_parsing_reads_back_both_and_offsets() -> None:
    assert parse_time(precise_time(MOMENT)) == MOMENT
    assert parse_time(kubernetes_time(MOMENT)) == MOMENT.replace(microsecond=0)
    assert parse_time("2026-12-01T08:30:15-05:00") == MOMENT.replace(microsecond=0)
    assert parse_time("2026-12-01T13:30:15Z").tzinfo is not None


def test_times_without_a_zone_or_garbled_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2026-12-01T13:30:15")
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert parse_time_or_none(None) is None and parse_time_or_none("") is None
    assert parse_time_or_none("garbled") is None
    assert parse_time_or_none("2026-12-01T13:30:15Z") == datetime(2026, 12, 1, 13, 30, 15, tzinfo=UTC)
