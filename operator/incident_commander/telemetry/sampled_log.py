"""Log lines that an outsider can trigger at will, limited per kind of line.

A failed authentication or a planted Secret is worth a line, but not a thousand lines a second:
an attacker could fill the disk or drown the signal. Each key (a bounded vocabulary: a failure
reason) gets at most ``per_window`` lines per window; the rest are counted, and summarised in one
line when the key next logs after its window ended. Metrics count every occurrence regardless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Window:
    started: float
    emitted: int = 0
    suppressed: int = 0


class SampledLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_window: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_window = per_window
        self._window = window
        self._clock = clock
        self._keys: dict[str, _Window] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        now = self._clock()
        window = self._keys.get(key)
        if window is None or now - window.started >= self._window:
            if window is not None and window.suppressed:
                self._logger.log(
                    level,
                    "%d more %s lines were suppressed in %.0fs (rate-limited logging)",
                    window.suppressed,
                    key,
                    now - window.started,
                )
            window = self._keys[key] = _Window(started=now)
        if window.emitted < self._per_window:
            window.emitted += 1
            self._logger.log(level, message, *args)
        else:
            window.suppressed += 1
