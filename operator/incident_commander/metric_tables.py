"""Labelled gauge and histogram families kept as plain tables, exposed at scrape time.

prometheus_client keeps every labelled series as objects of its own (the child metric, its value
holder, a lock, label dicts): about 1.4 KB per series. The per-object families (conditions, probes,
budgets, API keys, incidents) have tens of thousands of series at a few thousand objects, and at
N = 1,000 they were the largest live share of the operator's memory (docs/performance.md,
"The census, and what it found"). Here a series is one entry of a dict from label values to a float (or,
for a histogram, to its bucket counts), and the exposition is produced by a collector when
Prometheus scrapes, in the same text prometheus_client writes for its own families.

The interface is the part of prometheus_client's the operator uses: ``labels(*values)`` with
``set``/``observe``, ``remove(*values)`` (KeyError when absent) and ``clear()``.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]
V = TypeVar("V")
T = TypeVar("T")


class _Table(Collector, Generic[V]):
    """What both families share: the name, help, label names, the table and its lock.

    Setters run on reconciler threads and scrapes on the metrics server's: one lock, held for a dict
    operation or for a copy of the table."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._series: dict[LabelValues, V] = {}
        registry.register(self)

    def _key(self, values: Iterable[object]) -> LabelValues:
        key = tuple(str(v) for v in values)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {key}")
        return key

    def remove(self, *values: object) -> None:
        key = self._key(values)
        with self._lock:
            del self._series[key]

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


class _Series(Generic[T]):
    """One series of a table: what ``labels(...)`` returns, as prometheus_client's child does."""

    __slots__ = ("_key", "_table")

    def __init__(self, table: T, key: LabelValues) -> None:
        self._table = table
        self._key = key


class GaugeTable(_Table[float]):
    """A labelled gauge family."""

    def labels(self, *values: object) -> _GaugeSeries:
        return _GaugeSeries(self, self._key(values))

    def _set(self, key: LabelValues, value: float) -> None:
        with self._lock:
            self._series[key] = float(value)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            rows = list(self._series.items())
        for key, value in rows:
            family.add_metric(key, value)
        return [family]


class _GaugeSeries(_Series[GaugeTable]):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._table._set(self._key, value)


class HistogramTable(_Table[list[float]]):
    """A labelled histogram family: per series, the count in each bucket (not cumulative) and the
    sum of the observations; cumulated when scraped."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry=registry)

    def labels(self, *values: object) -> _HistogramSeries:
        return _HistogramSeries(self, self._key(values))

    def _observe(self, key: LabelValues, value: float) -> None:
        index = bisect.bisect_left(self._bounds, value)  # the first bound >= value, as ``le`` means
        with self._lock:
            counts = self._series.get(key)
            if counts is None:
                counts = self._series[key] = [0.0] * (len(self._bounds) + 1)
            counts[index] += 1
            counts[-1] += value

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            rows = [(key, list(counts)) for key, counts in self._series.items()]
        for key, counts in rows:
            family.add_metric(key, list(zip(self._le, _cumulative(counts[:-1]), strict=True)), counts[-1])
        return [family]


def _cumulative(counts: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for count in counts:
        total += count
        yield total


class _HistogramSeries(_Series[HistogramTable]):
    __slots__ = ()

    def observe(self, value: float) -> None:
        self._table._observe(self._key, value)
