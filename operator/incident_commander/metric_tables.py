"""Labelled gauge, counter and histogram families kept as plain tables, exposed at scrape time.

prometheus_client keeps every labelled series as objects of its own (the child metric, its value
holder, a lock, label dicts): about 1.4 KB per series. The per-object families (conditions, probes,
budgets, API keys, incidents) have tens of thousands of series at a few thousand objects, and at
N = 1,000 they were the largest live share of the operator's memory (docs/performance.md,
"The census, and what it found"). Here a series is one entry of a dict from label values to a float (or,
for a histogram, to its bucket counts), and the exposition is produced by a collector when
Prometheus scrapes, in the same text prometheus_client writes for its own families.

The interface is the part of prometheus_client's the operator uses: ``labels(*values)`` with
``set``/``observe``, ``remove(*values)`` (KeyError when absent) and ``clear()``.

``exposition`` is what ``/metrics`` calls: the library's encoder writes every other family, and the
tables write their own lines, the same bytes the encoder would write for them (the tests compare
the two for every format and escaping it serves this way; any other falls back to the library).
Through the library, each sample is a ``Sample`` with a label dict, sorted and escaped again for
every line: at N = 1,000 a scrape of 58,081 samples cost 0.85 CPU-s.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry, exposition
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]
Encoder = Callable[[Collector], bytes]
V = TypeVar("V")
T = TypeVar("T")

_TABLES: weakref.WeakKeyDictionary[CollectorRegistry, list[_Table[object]]] = weakref.WeakKeyDictionary()
"""The tables registered in each registry, in registration order."""

_WRITING = threading.local()
"""Set on the thread that is writing an exposition itself: the tables' ``collect`` yields nothing
there, so the library's encoder writes only the other families."""

_SAME_NAMES = frozenset({openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8, openmetrics.VALUES})
"""Escapings that leave legacy-valid metric and label names as they are (``dots`` does not)."""

_LEGACY_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")
"""Names every escaping leaves alone but ``dots`` (Prometheus' classic character sets; label names
starting with ``__`` are reserved)."""

_VERSIONS = frozenset({"1.0.0", "2.0.0"})
"""OpenMetrics versions whose classic gauge and histogram lines the tests compare."""


_go = cast(Callable[[float], str], floatToGoString)
"""A sample value as both formats write it (Go's float formatting)."""


def _escape_value(value: str) -> str:
    """A label value as both text formats write it (backslash, newline and quote escaped)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _format(encoder: Encoder) -> str | None:
    """The format the encoder writes ("text" or "openmetrics") when the tables can write their
    lines for it themselves; None when only the library can."""
    if encoder is exposition.generate_latest:
        return "text"
    if not isinstance(encoder, functools.partial) or encoder.args:
        return None
    keywords = dict(encoder.keywords)
    if keywords.pop("escaping", openmetrics.UNDERSCORES) not in _SAME_NAMES:
        return None
    if encoder.func is exposition.generate_latest and not keywords:
        return "text"
    if encoder.func is openmetrics.generate_latest and keywords.pop("version", "1.0.0") in _VERSIONS:
        return None if keywords else "openmetrics"
    return None


def exposition_of(registry: CollectorRegistry, encoder: Encoder, names: Sequence[str] = ()) -> bytes:
    """What ``encoder`` writes for ``registry`` (only the samples named in ``names``, if any), with
    the tables' lines written by the tables. Called on a worker thread, as scrapes are."""
    tables = _TABLES.get(registry, [])
    style = _format(encoder)
    source = registry.restricted_registry(names) if names else registry
    if style is None or not tables or not all(table.legacy_names for table in tables):
        return encoder(source)
    _WRITING.active = True
    try:
        others = encoder(source)
    finally:
        _WRITING.active = False
    wanted = frozenset(names) if names else None
    lines = "".join(table.exposition(encoder, wanted) for table in tables).encode()
    if style == "openmetrics":
        end = b"# EOF\n"
        if not others.endswith(end):
            raise ValueError("an OpenMetrics exposition that does not end with # EOF")
        return others[: -len(end)] + lines + end
    return others + lines


class _Family(Collector):
    """One metric, as a collector: for the library to write a family's HELP and TYPE lines."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


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
        self.legacy_names = _LEGACY_METRIC.fullmatch(name) is not None and all(
            _LEGACY_LABEL.fullmatch(label) is not None for label in self._labelnames
        )
        registry.register(self)
        _TABLES.setdefault(registry, []).append(self)  # type: ignore[arg-type]

    def _empty(self) -> Metric:
        raise NotImplementedError

    def exposition(self, encoder: Encoder, wanted: frozenset[str] | None) -> str:
        raise NotImplementedError

    def _header(self, encoder: Encoder) -> str:
        """The family's HELP and TYPE lines as ``encoder`` writes them."""
        text = encoder(_Family(self._empty())).decode()
        return text.removesuffix("# EOF\n")

    def _label_text(self, names: Sequence[str]) -> Callable[[LabelValues], str]:
        """Label values (in ``self._labelnames`` order) to ``a="x",b="y"``, sorted by name as the
        library writes them, for the label names ``names`` (a subset of ``self._labelnames``)."""
        order = sorted((name, self._labelnames.index(name)) for name in names)
        prefixes = [(f'{name}="', index) for name, index in order]

        def text(values: LabelValues) -> str:
            return ",".join(f'{prefix}{_escape_value(values[index])}"' for prefix, index in prefixes)

        return text

    def _key(self, values: Iterable[object], named: dict[str, object] | None = None) -> LabelValues:
        """The series' key from label values in order, or by name as the library also takes them."""
        if named:
            if tuple(values):
                raise ValueError(f"{self._name}: label values by position or by name, not both")
            if set(named) != set(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {sorted(named)}")
            values = (named[name] for name in self._labelnames)
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


class _ValueTable(_Table[float]):
    """A family with one value per series: a gauge's, or a counter's ``_total``."""

    _sample: str
    """The samples' name."""

    def describe(self) -> Iterable[Metric]:
        return [self._empty()]

    def collect(self) -> Iterable[Metric]:
        if getattr(_WRITING, "active", False):
            return []
        family = self._empty()
        with self._lock:
            rows = list(self._series.items())
        for key, value in rows:
            family.add_metric(key, value)  # type: ignore[attr-defined]
        return [family]

    def exposition(self, encoder: Encoder, wanted: frozenset[str] | None) -> str:
        """The family's lines as ``encoder`` writes them; with ``wanted``, only those samples (and
        the header only if one is left), as the library's restricted registry does."""
        with self._lock:
            rows = list(self._series.items())
        if wanted is not None and (self._sample not in wanted or not rows):
            return ""
        labels = self._label_text(self._labelnames)
        name = self._sample
        if self._labelnames:
            lines = [f"{name}{{{labels(key)}}} {_go(value)}\n" for key, value in rows]
        else:
            lines = [f"{name} {_go(value)}\n" for _, value in rows]
        return self._header(encoder) + "".join(lines)


class GaugeTable(_ValueTable):
    """A labelled gauge family."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self._sample = name
        super().__init__(name, documentation, labelnames, registry=registry)

    def labels(self, *values: object, **named: object) -> _GaugeSeries:
        return _GaugeSeries(self, self._key(values, named))

    def _set(self, key: LabelValues, value: float) -> None:
        with self._lock:
            self._series[key] = float(value)

    def _empty(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)


class _GaugeSeries(_Series[GaugeTable]):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._table._set(self._key, value)


class CounterTable(_ValueTable):
    """A labelled counter family. As with the library's Counter, the family is named without
    ``_total`` and its samples with it, whichever of the two the name is given as."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        family = name.removesuffix("_total")
        self._sample = f"{family}_total"
        super().__init__(family, documentation, labelnames, registry=registry)

    def labels(self, *values: object, **named: object) -> _CounterSeries:
        return _CounterSeries(self, self._key(values, named))

    def _inc(self, key: LabelValues, amount: float) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self._series[key] = self._series.get(key, 0.0) + amount

    def _empty(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)


class _CounterSeries(_Series[CounterTable]):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        self._table._inc(self._key, amount)


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

    def labels(self, *values: object, **named: object) -> _HistogramSeries:
        return _HistogramSeries(self, self._key(values, named))

    def _observe(self, key: LabelValues, value: float) -> None:
        index = bisect.bisect_left(self._bounds, value)  # the first bound >= value, as ``le`` means
        with self._lock:
            counts = self._series.get(key)
            if counts is None:
                counts = self._series[key] = [0.0] * (len(self._bounds) + 1)
            counts[index] += 1
            counts[-1] += value

    def _empty(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def describe(self) -> Iterable[Metric]:
        return [self._empty()]

    def collect(self) -> Iterable[Metric]:
        if getattr(_WRITING, "active", False):
            return []
        family = self._empty()
        with self._lock:
            rows = [(key, list(counts)) for key, counts in self._series.items()]
        for key, counts in rows:
            family.add_metric(key, list(zip(self._le, _cumulative(counts[:-1]), strict=True)), counts[-1])
        return [family]

    def exposition(self, encoder: Encoder, wanted: frozenset[str] | None) -> str:
        """As GaugeTable.exposition: per series its buckets (``le`` among the labels in name
        order), then ``_count`` and ``_sum`` (none when a bound is negative, as in the library)."""
        with self._lock:
            rows = [(key, list(counts)) for key, counts in self._series.items()]
        bucket, count, total = (f"{self._name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        totals = self._bounds[0] >= 0
        if wanted is None:
            buckets, counts, sums = True, totals, totals
        else:
            buckets, counts, sums = bucket in wanted, totals and count in wanted, totals and total in wanted
            if not rows or not (buckets or counts or sums):
                return ""
        before = self._label_text([n for n in self._labelnames if n < "le"])
        after = self._label_text([n for n in self._labelnames if n > "le"])
        labels = self._label_text(self._labelnames)
        les = [f'le="{le}"' for le in self._le]
        lines: list[str] = []
        for key, values in rows:
            cumulative = list(_cumulative(values[:-1]))
            if buckets:
                head, tail = before(key), after(key)
                head = f"{bucket}{{{head}," if head else f"{bucket}{{"
                tail = f",{tail}}} " if tail else "} "
                lines.extend(
                    f"{head}{le}{tail}{_go(up_to)}\n" for le, up_to in zip(les, cumulative, strict=True)
                )
            text = labels(key)
            text = f"{{{text}}}" if text else ""
            if counts:  # the +Inf bucket's count, as the library takes it
                lines.append(f"{count}{text} {_go(cumulative[-1])}\n")
            if sums:
                lines.append(f"{total}{text} {_go(values[-1])}\n")
        return self._header(encoder) + "".join(lines)


def _cumulative(counts: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for count in counts:
        total += count
        yield total


class _HistogramSeries(_Series[HistogramTable]):
    __slots__ = ()

    def observe(self, value: float) -> None:
        self._table._observe(self._key, value)
