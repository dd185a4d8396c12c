"""The API's JSON reader: whatever the bytes, a value or a 400, never an exception of another kind."""

from __future__ import annotations

import pytest

from incident_commander.api.bodies import MAX_JSON_DEPTH, parse_json
from incident_commander.api.context import ApiError


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 60_000, "nests deeper than"),
        (b"[" * 500 + b"]" * 500, "nests deeper than"),
        (b'{"n": ' + b"9" * 5000 + b"}", "more than 40 digits"),
        (b'{"n": -' + b"9" * 41 + b"}", "more than 40 digits"),
        (b'{"n": 1.' + b"0" * 60 + b"}", "more than 40 digits"),
        (b'{"n": NaN}', "NaN"),
        (b'{"n": -Infinity}', "-Infinity"),
        (b'{"n": ', "line 1 column"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_odd_input_is_a_400(raw: bytes, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_json(raw)
    assert raised.value.status == 400 and raised.value.reason == "MalformedJson"
    assert message in raised.value.message


def test_ordinary_json_is_read() -> None:
    nested: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = [nested]
    assert parse_json(b'{"n": 12345678901234567890, "x": 0.5, "s": "ok"}') == {
        "n": 12345678901234567890,
        "x": 0.5,
        "s": "ok",
    }
    assert parse_json(repr(nested).encode()) == nested
