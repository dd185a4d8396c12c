"""Bodies, headers and queries of the ``/v1/incidents`` routes, parsed strictly. Pure.

Messages name the field (api/bodies.py's rules: unknown fields are refused, lengths bounded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from incident_commander.api.bodies import BodyError, _integer, _object, _string
from incident_commander.incidents.model import (
    DEFAULT_PROPOSAL_TIMEOUT,
    MAX_PROPOSAL_TIMEOUT,
    RESOLUTION_CODES,
    STATUSES,
    Resolution,
)
from incident_commander.incidents.service import OpenRequest

INCIDENT_ID = re.compile(r"^inc-[0-9a-f]{22}$")
PROPOSAL_ID = re.compile(r"^prop-[0-9a-f]{16}$")
ARTIFACT_ID = re.compile(r"^art-[0-9a-f]{16}$")
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&.+^_-]{0,62}/[a-z0-9][a-z0-9!#$&.+^_-]{0,62}$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
MAX_LABELS = 20
MAX_LIST = 100
DEFAULT_LIST = 20


def parse_open(data: Any) -> OpenRequest:
    body = _object(
        data,
        required={"title", "severity"},
        optional={"description", "source", "dedupKey", "labels"},
    )
    labels = body.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
            raise BodyError(f"labels must be an object of at most {MAX_LABELS} string values")
        for key, value in labels.items():
            if not LABEL_KEY.match(key):
                raise BodyError(f"label key {key[:70]!r} must match {LABEL_KEY.pattern}")
            if not isinstance(value, str) or len(value) > 256:
                raise BodyError(f"label {key} must be a string of at most 256 characters")
    return OpenRequest(
        title=_string(body, "title", max_length=200),
        severity=_string(body, "severity", max_length=31),
        description=_string(body, "description", max_length=4000) if "description" in body else "",
        source=_string(body, "source", max_length=200) if "source" in body else "",
        dedup_key=_string(body, "dedupKey", max_length=256) if "dedupKey" in body else None,
        labels=dict(labels) if labels else None,
    )


def _resolution(value: Any) -> Resolution:
    body = _object(value, required={"code", "summary"}, optional=set())
    code = _string(body, "code", max_length=32)
    if code not in RESOLUTION_CODES:
        raise BodyError(f"resolution.code must be one of {', '.join(RESOLUTION_CODES)}")
    return Resolution(code=code, summary=_string(body, "summary", max_length=2000))


def parse_resolve(data: Any) -> Resolution:
    body = _object(data, required={"resolution"}, optional=set())
    return _resolution(body["resolution"])


def parse_close(data: Any) -> Resolution | None:
    body = _object(data if data is not None else {}, required=set(), optional={"resolution"})
    return _resolution(body["resolution"]) if "resolution" in body else None


def parse_empty(data: Any) -> None:
    _object(data if data is not None else {}, required=set(), optional=set())


@dataclass(frozen=True, kw_only=True)
class AttachBody:
    name: str
    content_type: str


def parse_attach(data: Any) -> AttachBody:
    body = _object(data, required={"name", "contentType"}, optional=set())
    name = _string(body, "name", max_length=200)
    if not ARTIFACT_NAME.match(name):
        raise BodyError("name must be letters, digits, '.', '_' or '-' (a file name, no path)")
    content_type = _string(body, "contentType", max_length=127)
    if not CONTENT_TYPE.match(content_type):
        raise BodyError("contentType must be a lower-case media type such as text/plain")
    return AttachBody(name=name, content_type=content_type)


@dataclass(frozen=True, kw_only=True)
class ProposeBody:
    action: dict[str, Any]
    description: str
    timeout_seconds: int


def parse_propose(data: Any) -> ProposeBody:
    body = _object(data, required={"action", "description"}, optional={"timeoutSeconds"})
    action = body["action"]
    if not isinstance(action, dict) or not action:
        raise BodyError("action must be a non-empty JSON object (what the agent would do)")
    return ProposeBody(
        action=action,
        description=_string(body, "description", max_length=2000),
        timeout_seconds=_integer(body, "timeoutSeconds", low=1, high=MAX_PROPOSAL_TIMEOUT)
        if "timeoutSeconds" in body
        else DEFAULT_PROPOSAL_TIMEOUT,
    )


def parse_refuse(data: Any) -> str:
    body = _object(data, required={"reason"}, optional=set())
    return _string(body, "reason", max_length=1000)


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` header names (``"7"``, ``7``, or ``*`` for any), or BodyError."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip()
    if text.startswith("W/"):
        raise BodyError('If-Match takes the strong ETag of the incident ("<version>"), not a weak one')
    text = text.strip('"')
    if not text.isdigit() or len(text) > 12:
        raise BodyError('If-Match must be the incident\'s ETag, "<version>"')
    return int(text)


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    statuses: tuple[str, ...]
    severity: str | None
    limit: int
    cursor: str | None


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    unknown = sorted(set(query) - {"status", "severity", "limit", "cursor"})
    if unknown:
        raise BodyError(f"unknown query parameter(s): {', '.join(unknown)[:200]}")
    statuses: tuple[str, ...] = STATUSES
    if "status" in query:
        statuses = tuple(dict.fromkeys(s.strip() for s in query["status"].split(",")))
        wrong = [s for s in statuses if s not in STATUSES]
        if wrong or not statuses:
            raise BodyError(f"status must be a comma-separated list of {', '.join(STATUSES)}")
    severity = query.get("severity")
    if severity is not None and not 1 <= len(severity) <= 31:
        raise BodyError("severity must be 1 to 31 characters long")
    raw = query.get("limit", str(DEFAULT_LIST))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
        raise BodyError(f"limit must be an integer from 1 to {MAX_LIST}")
    cursor = query.get("cursor")
    if cursor is not None and not 1 <= len(cursor) <= 128:
        raise BodyError("cursor is not one this API handed out")
    return ListQuery(statuses=statuses, severity=severity, limit=int(raw), cursor=cursor)


def parse_audit_query(query: Mapping[str, str]) -> tuple[int, int]:
    """(after version, limit) of ``GET /v1/incidents/{id}/audit``."""
    unknown = sorted(set(query) - {"after", "limit"})
    if unknown:
        raise BodyError(f"unknown query parameter(s): {', '.join(unknown)[:200]}")
    after, limit = query.get("after", "0"), query.get("limit", "100")
    if not after.isdigit() or len(after) > 10:
        raise BodyError("after must be a version number (0 for the start)")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise BodyError("limit must be an integer from 1 to 1000")
    return int(after), int(limit)
