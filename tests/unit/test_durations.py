from datetime import timedelta

import pytest

from incident_commander.durations import InvalidDuration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200ms", timedelta(milliseconds=200)),
        ("5s", timedelta(seconds=5)),
        ("15m", timedelta(minutes=15)),
        ("720h", timedelta(hours=720)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5s", timedelta(seconds=1.5)),
        ("0s", timedelta(0)),
    ],
)
def test_parses_go_style_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5d", "s", "-5s", "5 s", "1h 30m", "soon"])
def test_rejects_other_strings_naming_them(text: str) -> None:
    with pytest.raises(InvalidDuration, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["200ms", "5s", "15m", "720h", "1h30m5s", "2m0s"])
def test_format_round_trips(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_uses_largest_units_first() -> None:
    assert format_duration(timedelta(hours=1, minutes=30, milliseconds=5)) == "1h30m5ms"
    assert format_duration(timedelta(0)) == "0s"
