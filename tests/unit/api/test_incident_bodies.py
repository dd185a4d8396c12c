"""The /v1/incidents bodies, headers and queries: strict, with messages that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from incident_commander.api import incident_bodies as parse
from incident_commander.api.bodies import BodyError
from incident_commander.incidents.model import STATUSES, Resolution


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ([], "object"),
        ({"severity": "high"}, "title"),
        ({"title": "x", "severity": "high", "owner": "me"}, "owner"),
        ({"title": "x" * 201, "severity": "high"}, "title"),
        ({"title": "x", "severity": 3}, "severity"),
        ({"title": "x", "severity": "high", "dedupKey": ""}, "dedupKey"),
        ({"title": "x", "severity": "high", "labels": {"a b": "c"}}, "label key"),
        ({"title": "x", "severity": "high", "labels": {"a": 1}}, "label a"),
        ({"title": "x", "severity": "high", "labels": {f"k{i}": "v" for i in range(21)}}, "labels"),
    ],
)
def test_open_bodies_refused_name_the_field(body: Any, names: str) -> None:
    with pytest.raises(BodyError, match=names):
        parse.parse_open(body)


def test_an_open_body() -> None:
    request = parse.parse_open(
        {"title": "db", "severity": "critical", "dedupKey": "k", "labels": {"team": "pay"}}
    )
    assert (request.title, request.severity, request.dedup_key, request.labels) == (
        "db",
        "critical",
        "k",
        {"team": "pay"},
    )
    assert parse.parse_open({"title": "db", "severity": "low"}).dedup_key is None


def test_resolutions_and_empty_bodies() -> None:
    assert parse.parse_resolve({"resolution": {"code": "mitigated", "summary": "drained"}}) == Resolution(
        code="mitigated", summary="drained"
    )
    with pytest.raises(BodyError, match=r"resolution\.code"):
        parse.parse_resolve({"resolution": {"code": "done", "summary": "x"}})
    with pytest.raises(BodyError, match="summary"):
        parse.parse_resolve({"resolution": {"code": "fixed"}})
    assert parse.parse_close(None) is None and parse.parse_close({}) is None
    parse.parse_empty(None)
    with pytest.raises(BodyError, match="force"):
        parse.parse_empty({"force": True})


def test_artifacts_and_proposals() -> None:
    assert parse.parse_attach({"name": "heap.txt", "contentType": "text/plain"}).name == "heap.txt"
    for name in ("../etc/passwd", "a/b", ".hidden", ""):
        with pytest.raises(BodyError):
            parse.parse_attach({"name": name, "contentType": "text/plain"})
    with pytest.raises(BodyError, match="contentType"):
        parse.parse_attach({"name": "a", "contentType": "Text/Plain; charset=utf-8"})
    proposal = parse.parse_propose({"action": {"kind": "restart"}, "description": "restart it"})
    assert proposal.timeout_seconds == 3600
    for action in ({}, [], "restart"):
        with pytest.raises(BodyError, match="action"):
            parse.parse_propose({"action": action, "description": "x"})
    with pytest.raises(BodyError, match="timeoutSeconds"):
        parse.parse_propose({"action": {"a": 1}, "description": "x", "timeoutSeconds": 0})
    assert parse.parse_refuse({"reason": "no"}) == "no"


@pytest.mark.parametrize(
    ("header", "version"), [(None, None), ("*", None), ('"7"', 7), ("7", 7), (' "12" ', 12)]
)
def test_if_match(header: str | None, version: int | None) -> None:
    assert parse.parse_if_match(header) == version


@pytest.mark.parametrize("header", ['W/"7"', '"seven"', '"-1"', '"' + "9" * 13 + '"', '""'])
def test_if_match_refused(header: str) -> None:
    with pytest.raises(BodyError, match="If-Match"):
        parse.parse_if_match(header)


def test_list_and_audit_queries() -> None:
    everything = parse.parse_list_query({})
    assert (everything.statuses, everything.limit, everything.cursor) == (STATUSES, 20, None)
    some = parse.parse_list_query({"status": "open,acknowledged,open", "severity": "high", "limit": "100"})
    assert (some.statuses, some.severity, some.limit) == (("open", "acknowledged"), "high", 100)
    for query, names in (
        ({"status": "burning"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"sort": "asc"}, "sort"),
    ):
        with pytest.raises(BodyError, match=names):
            parse.parse_list_query(query)
    assert parse.parse_audit_query({"after": "3", "limit": "10"}) == (3, 10)
    with pytest.raises(BodyError, match="after"):
        parse.parse_audit_query({"after": "-1"})
