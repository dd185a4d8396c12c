"""The cost curve: bench/reconcile_scale.py at several N, and how each cost grows with N.

    python -m bench.curve 100 300 1000 [--idle 60]        # run, then fit
    python -m bench.curve --fit-only 100 300 1000         # fit the JSON already in bench/results/

Each N is one reconcile_scale run (its own control plane, moto servers, floor and operator), one
after the other; the raw results go to ``bench/results/scale-<N>.json``. Then, for each measure,
the least-squares slope of log(measure) against log(N): 1.0 is linear, below 1 sub-linear. RSS is
fitted beyond its fixed base (the operator's RSS once started, before any object exists, measured
in the same run). The fit and the points go to ``bench/results/curve.json``; bench/plot_curve.py
draws them (``make bench-plot``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

MEASURES: dict[str, Callable[[dict[str, Any]], float]] = {
    "operator wall s": lambda r: r["operator"]["all_ready_s"],
    "floor wall s": lambda r: r["floor"]["all_ready_s"],
    "operator CPU s": lambda r: r["convergence_cpu_s"]["operator"],
    "floor CPU s": lambda r: r["floor"]["cpu_s"]["floor"],
    "all processes CPU s (operator run)": lambda r: r["cpu_total_s"],
    "all processes CPU s (floor run)": lambda r: r["floor"]["cpu_total_s"],
    "operator writes": lambda r: r["writes_per_object"] * r["objects"],
    "operator peak RSS MB": lambda r: r["operator_peak_rss_mb"],
    "operator peak RSS beyond base MB": lambda r: r["operator_peak_rss_mb"] - r["operator_rss_mb_at_start"],
}


def slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares of log y = a + b log x: (b, a). By hand: numpy is not a dependency."""
    if len(xs) < 2:
        raise ValueError("a slope needs two points at least")
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    sxy = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True))
    b = sxy / sxx
    return b, my - b * mx


def run(results: Path, counts: Iterable[int], idle: float, timeout: float) -> None:
    results.mkdir(exist_ok=True)
    for n in counts:
        out = results / f"scale-{n}.json"
        print(f"--- N = {n} (load {os.getloadavg()})", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.reconcile_scale",
                str(n),
                "--idle",
                str(idle),
                "--timeout",
                str(timeout),
                "--json",
                str(out),
            ],
            check=True,
        )


def fit(results: Path, counts: Sequence[int]) -> dict[str, Any]:
    runs = {n: json.loads((results / f"scale-{n}.json").read_text()) for n in counts}
    ns = sorted(runs)
    points = {name: [measure(runs[n]) for n in ns] for name, measure in MEASURES.items()}
    slopes = {name: slope(ns, values)[0] for name, values in points.items()}
    per_object = {
        "operator CPU ms per object": [1000 * runs[n]["convergence_cpu_s"]["operator"] / (3 * n) for n in ns],
        "writes per object": [runs[n]["writes_per_object"] for n in ns],
        "wall operator/floor": [runs[n]["ratio_to_floor"] for n in ns],
        "CPU operator/floor": [runs[n]["cpu_ratio_to_floor"] for n in ns],
        "process CPU operator/floor": [runs[n]["process_cpu_ratio_to_floor"] for n in ns],
        "idle CPU % of a core": [runs[n]["idle_cpu_percent_of_core"] for n in ns],
        "load average before (1 min)": [runs[n]["loadavg_before"][0] for n in ns],
    }
    return {"counts": ns, "points": points, "slopes": slopes, "per_count": per_object}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("counts", type=int, nargs="+", help="N: objects of each kind")
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=2400.0)
    parser.add_argument("--fit-only", action="store_true", help="fit the results already there")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.fit_only:
        run(args.results, args.counts, args.idle, args.timeout)
    curve = fit(args.results, args.counts)
    (args.results / "curve.json").write_text(json.dumps(curve, indent=2))
    print(f"N: {curve['counts']}")
    for name, values in curve["points"].items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:40s} {shown:40s} log-log slope {curve['slopes'][name]:5.2f}")
    for name, values in curve["per_count"].items():
        print(f"{name:40s} " + ", ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
