from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from incident_commander.api import openapi
from incident_commander.api.app import build_api_app
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from tests.support.budgets import NoBudgets

DOCS = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_docs_copy_is_current() -> None:
    assert DOCS.read_text() == openapi.render(), "regenerate docs/openapi.json (see docs/api.md)"


def test_every_served_route_is_documented_and_nothing_else() -> None:
    app = build_api_app(
        ApiContext(
            keyring=Keyring(),
            directory=Directory(),
            metrics=ApiMetrics(CollectorRegistry()),
            budgets=NoBudgets(),
        )
    )
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/v1/") and route.method != "HEAD":
            served.add((path, route.method.lower()))
    documented = {(path, method) for path, item in openapi.document()["paths"].items() for method in item}
    assert served == documented


def test_every_reference_resolves() -> None:
    text = openapi.render()
    schemas = openapi.document()["components"]["schemas"]
    for name in re.findall(r'"#/components/schemas/(\w+)"', text):
        assert name in schemas
