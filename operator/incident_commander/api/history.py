"""Recent routing decisions and usage reports per policy, for ``/v1/history`` and ``/v1/summary``.

Bounded ring buffers in memory: history is a convenience for operators looking
at a live system, not a record (the budget ledger in DynamoDB is the record).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incident_commander.timestamps import precise_time

PolicyKey = tuple[str, str]
DEFAULT_DEPTH = 100


class History:
    def __init__(self, *, depth: int = DEFAULT_DEPTH, max_policies: int = 10_000) -> None:
        self._depth = depth
        self._max_policies = max_policies
        self._entries: dict[PolicyKey, deque[tuple[str, Mapping[str, Any]]]] = {}
        self._counts: dict[PolicyKey, dict[str, int]] = {}

    def record(self, policy: PolicyKey, kind: str, entry: Mapping[str, Any]) -> None:
        """Keep ``entry`` as given (not copied: every request records one, so pass a mapping of
        its own that nobody changes afterwards)."""
        entries = self._entries.get(policy)
        if entries is None:
            if len(self._entries) >= self._max_policies:
                oldest = next(iter(self._entries))
                self._entries.pop(oldest)
                self._counts.pop(oldest, None)
            entries = self._entries[policy] = deque(maxlen=self._depth)
            self._counts[policy] = {}
        entries.append((kind, entry))
        counts = self._counts[policy]
        counts[kind] = counts.get(kind, 0) + 1

    def recent(self, policy: PolicyKey, limit: int) -> list[dict[str, Any]]:
        """Newest first; times (stored as datetimes, cheap to record) are formatted here."""
        entries = list(self._entries.get(policy, ()))[-limit:]
        return [
            {"kind": kind} | {k: precise_time(v) if isinstance(v, datetime) else v for k, v in entry.items()}
            for kind, entry in reversed(entries)
        ]

    def counts(self, policy: PolicyKey) -> dict[str, int]:
        return dict(self._counts.get(policy, {}))

    def forget(self, policy: PolicyKey) -> None:
        self._entries.pop(policy, None)
        self._counts.pop(policy, None)
