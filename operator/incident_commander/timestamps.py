"""Times as the operator writes and reads them: one place for RFC 3339 in UTC.

Two renderings, because two audiences: ``kubernetes_time`` is metav1.Time (whole seconds, what
``kubectl`` shows in status), ``precise_time`` keeps the microseconds (the key index and the
signing keys, where a rotation a few milliseconds after an issuance must still sort after it).
Both end in ``Z``; ``parse_time`` reads either, and anything ``datetime.fromisoformat`` reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def kubernetes_time(moment: datetime) -> str:
    """RFC 3339 with second precision, the format Kubernetes uses for metav1.Time."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, microseconds kept when there are any."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (``Z`` or an offset) as an aware datetime; ValueError when it is not one."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed


def parse_time_or_none(value: Any) -> datetime | None:
    """``parse_time`` for values read from status, where absent or garbled means unknown."""
    if not value:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None
