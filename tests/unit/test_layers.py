"""Nothing below imports from above: the layers of docs/architecture.md, checked on every import."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "incident_commander"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("operator_app", "servers", "config"),
    ("api",),
    ("kinds", "incidents"),
    ("controller", "watches"),
    ("budget",),
    ("aws", "credentials", "storage"),
    ("status", "workers", "relist", "readiness", "leadership"),
    (
        "kube_api",
        "kept_objects",
        "conditions",
        "timestamps",
        "clock",
        "durations",
        "metrics",
        "metric_tables",
        "telemetry",
        "allocator",
    ),
    ("",),  # the package itself: its version and API group
)
"""Top to bottom. A module may import from its own layer and from any layer below it."""


def rank(module: str) -> int:
    """The layer of ``incident_commander.<module>`` (its first component decides)."""
    head = module.split(".")[0] if module else ""
    for index, layer in enumerate(LAYERS):
        if head in layer:
            return index
    raise AssertionError(
        f"incident_commander.{module} is in no layer: add it to LAYERS and docs/architecture.md"
    )


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module below incident_commander, line) for every import of the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("incident_commander"):
            found.append((node.module.removeprefix("incident_commander").lstrip("."), node.lineno))
        elif isinstance(node, ast.Import):
            found += [
                (alias.name.removeprefix("incident_commander").lstrip("."), node.lineno)
                for alias in node.names
                if alias.name.startswith("incident_commander")
            ]
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        module = "" if module == "__init__" else module.removesuffix(".__init__")
        for imported, line in imports(path):
            if rank(imported) < rank(module):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports incident_commander.{imported}")
    assert upward == []


def test_the_layers_are_the_ones_the_architecture_map_shows() -> None:
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    for layer in LAYERS[:-1]:
        for name in layer:
            assert name in text, f"{name} is missing from docs/architecture.md"
