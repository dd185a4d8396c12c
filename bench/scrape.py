"""What one ``/metrics`` scrape costs: the operator's metric families filled as N objects of each
kind fill them, written as ``/metrics`` writes them next to the library writing every family itself.

    python -m bench.scrape 1000 [--rounds 5]

No cluster: ``OperatorMetrics`` is filled through its own setters as the controllers call them (per
object: its conditions; per AwsConnection: three services' probe histogram and health; per
IncidentPolicy: two API keys, incidents open and the MTTA and MTTR histograms of two severities).
For the text format and for what Prometheus 3 asks (OpenMetrics), reported: samples, CPU seconds
of one exposition (the least of ``--rounds``) through ``metric_tables.exposition_of`` (the tables
write their own lines) and through the library's encoder over the same registry (every family as
``Sample`` objects), and the ratio. Both outputs are checked to hold the same families.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.exposition import choose_encoder

from incident_commander.metric_tables import exposition_of
from incident_commander.metrics import OperatorMetrics

FORMATS = {
    "text": "text/plain;version=0.0.4",
    "openmetrics": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;q=0.4",
}
SERVICES = ("sts", "s3", "dynamodb")
SEVERITIES = ("critical", "high")


def filled(n: int) -> OperatorMetrics:
    metrics = OperatorMetrics()
    for index in range(n):
        namespace = f"team-{index % 50}"
        for kind in ("AwsConnection", "BudgetPolicy", "IncidentPolicy"):
            metrics.set_conditions(
                kind,
                namespace,
                f"obj-{index}",
                {"Ready": "True", "Progressing": "False", "Degraded": "False"},
            )
        for service in SERVICES:
            labels = (namespace, f"obj-{index}", service)
            metrics.aws_probe_duration.labels(*labels).observe(0.004 + index % 7 / 100)
            metrics.aws_service_up.labels(*labels).set(1)
        metrics.set_api_keys(namespace, f"obj-{index}", {"agent": 1.8e9 + index, "admin": 1.8e9 - index})
        metrics.set_open_incidents(namespace, f"obj-{index}", dict.fromkeys(SEVERITIES, index % 3))
        for severity in SEVERITIES:
            metrics.observe_incident(
                namespace, f"obj-{index}", severity, to_acknowledge=30.0 + index % 90, to_resolve=900.0
            )
    return metrics


def least_cpu(work: Callable[[], bytes], rounds: int) -> tuple[float, bytes]:
    best, output = float("inf"), b""
    for _ in range(rounds):
        started = time.process_time()
        output = work()
        best = min(best, time.process_time() - started)
    return best, output


def families(text: bytes) -> list[str]:
    """The families, sorted, but the process and runtime ones: their values move between calls."""
    blocks = ["# HELP" + block for block in text.decode().split("# HELP")[1:]]
    return sorted(
        block.removesuffix("# EOF\n")
        for block in blocks
        if not block.startswith(("# HELP process_", "# HELP python_"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", type=int)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    registry = filled(args.n).registry
    results: dict[str, object] = {"n": args.n, "rounds": args.rounds}
    for name, accept in FORMATS.items():
        encoder, _ = choose_encoder(accept)
        tables, ours = least_cpu(lambda encoder=encoder: exposition_of(registry, encoder), args.rounds)
        library, theirs = least_cpu(lambda encoder=encoder: encoder(registry), args.rounds)
        if families(ours) != families(theirs):
            raise SystemExit(f"{name}: the two expositions differ")
        samples = sum(1 for line in ours.splitlines() if line and not line.startswith(b"#"))
        results[name] = {
            "samples": samples,
            "bytes": len(ours),
            "tables_cpu_s": round(tables, 4),
            "library_cpu_s": round(library, 4),
            "library_over_tables": round(library / tables, 2),
        }
        print(
            f"N = {args.n:,} {name:12s} {samples:7,} samples: /metrics {tables:.3f} CPU-s, "
            f"the library alone {library:.3f} CPU-s ({library / tables:.1f}x)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
