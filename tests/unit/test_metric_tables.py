"""The table-backed families write what prometheus_client's own Gauge and Histogram write for the
same calls (the exposition is the contract with Prometheus and with docs/metrics.md)."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics

from incident_commander.metric_tables import GaugeTable, HistogramTable

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
