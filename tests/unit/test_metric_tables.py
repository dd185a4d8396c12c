"""The table-backed families write what prometheus_client's own Gauge and Histogram write for the
same calls (the exposition is the contract with Prometheus and with docs/metrics.md)."""

from __future__ import annotations

import contextlib
import math
import random
import threading
from collections.abc import Callable, Iterable, Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from incident_commander.metric_tables import CounterTable, GaugeTable, HistogramTable, exposition_of

LABELS = ("namespace", "name", "service")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@pytest.fixture(autouse=True)
def no_created_series() -> Iterator[None]:
    """As the operator runs the library (metrics.py): without ``_created`` series. The switch is
    process-wide: put it back as it was."""
    was = prometheus_metrics._use_created
    disable_created_metrics()  # type: ignore[no-untyped-call]
    yield
    if was:
        enable_created_metrics()  # type: ignore[no-untyped-call]


def pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)


def test_a_gauge_table_writes_what_a_gauge_writes_through_sets_removals_and_clear() -> None:
    theirs_registry, ours_registry = pair()
    theirs = Gauge("t_up", "Up.", LABELS, registry=theirs_registry)
    ours = GaugeTable("t_up", "Up.", LABELS, registry=ours_registry)
    rng = random.Random(7)  # noqa: S311 - test data
    live: set[tuple[str, str, str]] = set()
    for step in range(2_000):
        key = (f"ns-{rng.randrange(5)}", f"obj-{rng.randrange(20)}", rng.choice(("s3", "sts", "kinesis")))
        if rng.random() < 0.2 and live:
            gone = rng.choice(sorted(live))
            theirs.remove(*gone)
            ours.remove(*gone)
            live.discard(gone)
        else:
            value = rng.choice((0, 1, 2.5, -3, 1e12, 1.9e9 + step))
            theirs.labels(*key).set(value)
            ours.labels(*key).set(value)
            live.add(key)
        if step % 500 == 0:
            assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    theirs.clear()
    ours.clear()
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)


@pytest.mark.parametrize("name", ["t_requests_total", "t_requests"])
def test_a_counter_table_writes_what_a_counter_writes_with_or_without_total_in_its_name(name: str) -> None:
    theirs_registry, ours_registry = pair()
    theirs = Counter(name, "Requests.", LABELS, registry=theirs_registry)
    ours = CounterTable(name, "Requests.", LABELS, registry=ours_registry)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)  # no series yet
    rng = random.Random(13)  # noqa: S311 - test data
    for _ in range(2_000):
        key = (f"ns-{rng.randrange(4)}", f"obj-{rng.randrange(8)}", rng.choice(("s3", "sts")))
        amount = rng.choice((1, 1, 0, 2.5, 1e9))
        theirs.labels(*key).inc(amount)
        ours.labels(*key).inc(amount)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    theirs.remove("ns-0", "obj-0", "s3")
    ours.remove("ns-0", "obj-0", "s3")
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    with pytest.raises(ValueError, match="non-negative"):
        ours.labels("a", "b", "c").inc(-1)


def test_labels_by_name_are_the_same_series_as_by_position() -> None:
    ours = CounterTable("t_requests", "Requests.", LABELS, registry=CollectorRegistry())
    ours.labels(namespace="ns", name="obj", service="s3").inc()
    ours.labels("ns", "obj", "s3").inc()
    assert ours._series == {("ns", "obj", "s3"): 2.0}
    with pytest.raises(ValueError, match="expected labels"):
        ours.labels(namespace="ns", name="obj")
    with pytest.raises(ValueError, match="not both"):
        ours.labels("ns", name="obj", service="s3")


def test_a_histogram_table_writes_what_a_histogram_writes_including_values_on_bucket_bounds() -> None:
    theirs_registry, ours_registry = pair()
    theirs = Histogram("t_seconds", "Latency.", LABELS, buckets=BUCKETS, registry=theirs_registry)
    ours = HistogramTable("t_seconds", "Latency.", LABELS, buckets=BUCKETS, registry=ours_registry)
    rng = random.Random(11)  # noqa: S311 - test data
    values = [*BUCKETS, 0.0, 0.004, 0.0051, 31.0, 1e6]
    for _ in range(3_000):
        key = (f"ns-{rng.randrange(3)}", f"obj-{rng.randrange(10)}", rng.choice(("s3", "sts")))
        value = rng.choice(values) if rng.random() < 0.5 else rng.uniform(0, 40)
        theirs.labels(*key).observe(value)
        ours.labels(*key).observe(value)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)
    theirs.remove("ns-0", "obj-0", "s3")
    ours.remove("ns-0", "obj-0", "s3")
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)


def test_an_empty_family_is_described_like_the_library_describes_it() -> None:
    theirs_registry, ours_registry = pair()
    Gauge("t_g", "G.", LABELS, registry=theirs_registry)
    Histogram("t_h_seconds", "H.", LABELS, buckets=BUCKETS, registry=theirs_registry)
    GaugeTable("t_g", "G.", LABELS, registry=ours_registry)
    HistogramTable("t_h_seconds", "H.", LABELS, buckets=BUCKETS, registry=ours_registry)
    assert generate_latest(ours_registry) == generate_latest(theirs_registry)


def test_the_same_name_twice_in_one_registry_is_refused_as_for_the_library() -> None:
    registry = CollectorRegistry(auto_describe=True)
    GaugeTable("t_up", "Up.", LABELS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("t_up", "Up.", LABELS, registry=registry)


def test_wrong_label_counts_and_absent_series_fail_as_for_the_library() -> None:
    ours = GaugeTable("t_up", "Up.", LABELS, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="expected labels"):
        ours.labels("only-one")
    with pytest.raises(KeyError):
        ours.remove("ns", "absent", "s3")


def test_scrapes_while_other_threads_set_and_remove_never_fail() -> None:
    registry = CollectorRegistry()
    gauges = GaugeTable("t_up", "Up.", LABELS, registry=registry)
    histograms = HistogramTable("t_seconds", "Latency.", LABELS, buckets=BUCKETS, registry=registry)
    stop = threading.Event()

    def churn(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - test data
        while not stop.is_set():
            key = ("ns", f"obj-{rng.randrange(500)}", "s3")
            gauges.labels(*key).set(1)
            histograms.labels(*key).observe(rng.random())
            if rng.random() < 0.5:
                with contextlib.suppress(KeyError):
                    gauges.remove(*key)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(50):
            text = generate_latest(registry).decode()
            assert text.startswith("# HELP t_up Up.")
    finally:
        stop.set()
        for thread in threads:
            thread.join()


# -- the tables' own lines, as /metrics writes them ------------------------------------------------

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
"""What Prometheus 3 sends when it scrapes."""

NATIVE = (
    "",
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=2.0.0;escaping=underscores",
    PROMETHEUS_ACCEPT,
)
FALLBACK = (
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=dots",
)


def mixed_registry() -> tuple[CollectorRegistry, list[GaugeTable | HistogramTable | CounterTable]]:
    """Library families and tables side by side; labels that sort on both sides of ``le``; label
    values that need escaping; values Go writes its own way; an empty table; no labels at all."""
    registry = CollectorRegistry(auto_describe=True)
    Gauge("lib_up", "A library gauge.", ["zone"], registry=registry).labels("a").set(1)
    Counter("lib_calls", "A library counter.", ["zone"], registry=registry).labels("a").inc(3)
    calls = CounterTable("t_calls_total", "Calls.", ("namespace", "zone"), registry=registry)
    for index in range(5):
        calls.labels(f"ns-{index}", 'q"uote').inc(index + 0.5)
    counter = Histogram("lib_seconds", "A library histogram.", ["zone"], buckets=BUCKETS, registry=registry)
    counter.labels("b").observe(0.2)
    conditions = GaugeTable(
        "t_condition", 'Condition "quoted" \\ help.', ("namespace", "kind", "zone"), registry=registry
    )
    for index, value in enumerate((0, 1, 2.5, -3, 1e12, 1.9e9, math.inf, -math.inf, math.nan, 1e-7)):
        conditions.labels(f"ns-{index}", "Kind", f"z{index % 3}").set(value)
    conditions.labels('we"ird\\ns', "line\nbreak", "ünïcode").set(4)
    durations = HistogramTable(
        "t_seconds", "Latency.", ("service", "kind", "namespace"), buckets=BUCKETS, registry=registry
    )
    rng = random.Random(5)  # noqa: S311 - test data
    for _ in range(400):
        key = (rng.choice(("s3", "sts")), rng.choice(("a", "b")), f"ns-{rng.randrange(4)}")
        durations.labels(*key).observe(
            rng.choice([*BUCKETS, 0.0, 31.0]) if rng.random() < 0.5 else rng.uniform(0, 40)
        )
    empty = GaugeTable("t_empty", "Nothing yet.", ("namespace",), registry=registry)
    bare = HistogramTable("t_bare_seconds", "No labels.", (), buckets=(1, 2), registry=registry)
    bare.labels().observe(1.5)
    bare_gauge = GaugeTable("t_bare", "No labels.", (), registry=registry)
    signed = HistogramTable(
        "t_offset", "Negative bounds: no count or sum.", ("zone",), buckets=(-1, 0, 1), registry=registry
    )
    signed.labels("a").observe(-0.5)
    bare_gauge.labels().set(3)
    return registry, [conditions, durations, empty, bare, signed, bare_gauge, calls]


def families(text: bytes) -> list[str]:
    """The exposition's families (each from its HELP line), sorted: the tables come last in ours."""
    body = text.decode()
    blocks = ["# HELP" + block for block in body.split("# HELP")[1:]]
    if blocks and blocks[-1].endswith("# EOF\n"):
        blocks[-1] = blocks[-1].removesuffix("# EOF\n")
    return sorted(blocks)


@pytest.mark.parametrize("accept", NATIVE + FALLBACK)
@pytest.mark.parametrize(
    "names",
    [
        (),
        ("t_condition", "t_seconds_bucket", "t_bare_seconds_sum", "lib_up", "t_empty", "absent"),
        ("t_calls_total", "lib_calls_total", "t_bare"),
        ("t_calls", "t_calls_created"),
    ],
)
def test_tables_write_the_lines_the_encoder_writes(accept: str, names: tuple[str, ...]) -> None:
    registry, tables = mixed_registry()
    encoder, _ = choose_encoder(accept)
    expected = encoder(registry.restricted_registry(names) if names else registry)
    collected = 0

    def counting(table: GaugeTable | HistogramTable | CounterTable) -> Callable[[], Iterable[Metric]]:
        original = table.collect

        def collect() -> Iterable[Metric]:
            nonlocal collected
            found = original()
            collected += len(list(found))
            return found

        return collect

    for table in tables:
        table.collect = counting(table)  # type: ignore[method-assign]
    ours = exposition_of(registry, encoder, names)

    assert families(ours) == families(expected)
    assert ours.count(b"# EOF\n") == expected.count(b"# EOF\n")
    assert ours.endswith(b"# EOF\n") == expected.endswith(b"# EOF\n")
    # The native path was taken where it is served, and the library's otherwise.
    assert (collected == 0) == (accept in NATIVE), collected


def test_an_openmetrics_exposition_ends_with_one_eof_after_the_tables() -> None:
    registry, _ = mixed_registry()
    encoder, _ = choose_encoder(PROMETHEUS_ACCEPT)
    text = exposition_of(registry, encoder).decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert text.index("# HELP t_condition") < text.index("# EOF")


def test_a_table_with_a_name_outside_the_classic_character_set_leaves_the_writing_to_the_library() -> None:
    registry = CollectorRegistry(auto_describe=True)
    GaugeTable("t_up", "Up.", ("zone",), registry=registry).labels("a").set(1)
    GaugeTable("t.dotted", "UTF-8 name.", ("zone",), registry=registry).labels("b").set(2)
    for accept in (PROMETHEUS_ACCEPT, "text/plain"):
        encoder, _ = choose_encoder(accept)
        assert exposition_of(registry, encoder) == encoder(registry)  # the same order: the library's
