"""Duration strings as written in our CRDs ("200ms", "15m", "1h30m").

The CRD schema accepts the same grammar as Go's time.ParseDuration restricted to
ms, s, m and h, because the apiserver's CEL ``duration()`` checks bounds with Go
semantics; parsing the same grammar here keeps admission and reconciliation in
agreement.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")


class InvalidDuration(ValueError):
    """Raised for a string that is not a duration; the message names the value."""


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``"1h30m"`` into a timedelta."""
    if not _WHOLE.match(text):
        raise InvalidDuration(f"{text!r} is not a duration such as 500ms, 5s, 15m or 720h")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way Kubernetes users write durations, largest unit first."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
