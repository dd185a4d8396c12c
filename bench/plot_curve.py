"""Draws bench/results/curve.json (bench/curve.py) as docs/performance-curve.png.

    make bench-plot

matplotlib is not a dependency of the project: ``make bench-plot`` runs this file with a venv of
its own under ~/.cache/incident-commander/plot-venv (made once), never the project's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

ROOT = Path(__file__).resolve().parent.parent
PANELS = [
    ("Time to all Ready (s)", ["operator wall s", "floor wall s"]),
    (
        "CPU while converging (CPU-s)",
        [
            "operator CPU s",
            "floor CPU s",
            "all processes CPU s (operator run)",
            "all processes CPU s (floor run)",
        ],
    ),
    ("Operator API writes", ["operator writes"]),
    ("Operator peak RSS (MB)", ["operator peak RSS MB", "operator peak RSS beyond base MB"]),
]


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ROOT / "bench" / "results" / "curve.json"
    target = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "performance-curve.png"
    curve = json.loads(source.read_text())
    ns = curve["counts"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), dpi=100)
    for ax, (title, names) in zip(axes.flat, PANELS, strict=True):
        for name in names:
            values = curve["points"][name]
            ax.plot(ns, values, marker="o", label=f"{name} (slope {curve['slopes'][name]:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("N (objects of each kind; 3N in all)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("incident-commander: cost against N (log-log; slope 1 = linear)")
    fig.tight_layout()
    fig.savefig(target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
