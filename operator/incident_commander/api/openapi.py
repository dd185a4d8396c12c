"""The OpenAPI 3 document of the API, built from one place and also kept in ``docs/openapi.json``.

A unit test checks that the copy in docs/ is current and that every route the
application serves is documented; schemathesis checks the served document
against the live API.
"""

from __future__ import annotations

import json
from typing import Any

from incident_commander import __version__

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        answer["headers"] = headers
    return answer


_UNAUTHORIZED = _error(
    "No credential, or an invalid, expired or revoked one.",
    headers={"WWW-Authenticate": {"schema": {"type": "string"}, "description": "The accepted schemes."}},
)
_FORBIDDEN = _error("A valid credential without the role, or acting on another policy.")
_RATE_LIMITED = _error(
    "The client's token bucket is empty.",
    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
)
_BAD_REQUEST = _error("Malformed JSON, or a body or query that does not match the schema.")
_TOO_LARGE = _error("The body exceeds the size limit (64 KiB).")
_NOT_JSON = _error("The body is not application/json.")

_SECURED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
_MONEY = {
    "type": "string",
    "pattern": "^-?[0-9]+\\.[0-9]{2,}$",
    "description": "An exact decimal amount, fixed-point (never exponent notation).",
}
_UNAVAILABLE = _error(
    "The budget or its ledger is not available; retry.",
    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
)
_REFUSED = {
    "description": (
        "Refused for money: BudgetHalted (the budget is halted and the severity is not the most "
        "severe), or InsufficientBudget (the estimate does not fit in what is left before the "
        "budget halts; budget, remaining, estimate, currency and budgetPhase say why)."
    ),
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PATH_PARAMS = [
    {"name": "namespace", "in": "path", "required": True, "schema": _NAME},
]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "A short reason code."},
            "message": {"type": "string"},
            "budgetPhase": {"type": ["string", "null"]},
        },
    },
    "Refusal": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "enum": ["BudgetHalted", "InsufficientBudget"]},
            "message": {"type": "string"},
            "budgetPhase": {"type": ["string", "null"]},
            "budget": {"type": "string"},
            "remaining": _MONEY,
            "estimate": _MONEY,
            "currency": {"type": "string"},
        },
    },
    "Reservation": {
        "type": ["object", "null"],
        "description": "The hold on the budget for this call; null when the policy has no budget.",
        "required": ["id", "amount", "currency", "expiresAt", "capped"],
        "properties": {
            "id": {
                "type": "string",
                "description": "Send it as reservationId to /v1/usage to settle the hold.",
            },
            "amount": _MONEY,
            "currency": {"type": "string"},
            "expiresAt": {
                "type": "string",
                "format": "date-time",
                "description": "Unsettled, the hold is released at this time (spec.reservationTTL).",
            },
            "capped": {
                "type": "boolean",
                "description": "Whether it was checked against the cap (false: tracked only).",
            },
            "outcome": {"type": "string", "enum": ["settled", "expired"]},
            "released": {"oneOf": [_MONEY, {"type": "null"}]},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "tokenType", "expiresIn", "expiresAt", "kid"],
        "properties": {
            "token": {"type": "string"},
            "tokenType": {"type": "string", "enum": ["Bearer"]},
            "expiresIn": {"type": "integer"},
            "expiresAt": {"type": "string", "format": "date-time"},
            "kid": {"type": "string"},
        },
    },
    "Jwks": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
    },
    "RouteRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["policy", "taskType", "complexity", "estimatedTokens"],
        "properties": {
            "policy": {**_NAME, "description": "The caller's own IncidentPolicy."},
            "taskType": {"type": "string", "minLength": 1, "maxLength": 128},
            "complexity": {"type": "number", "minimum": 0, "maximum": 1},
            "estimatedTokens": {"type": "integer", "minimum": 0, "maximum": 100000000},
            "severity": {
                "type": "string",
                "minLength": 1,
                "maxLength": 31,
                "description": "The incident's severity; the policy's most severe one is routed under Halt.",
            },
        },
    },
    "RouteDecision": {
        "type": "object",
        "required": ["model", "reason", "budgetPhase", "samplingRate", "reservation"],
        "properties": {
            "model": {"type": "string"},
            "reason": {"type": "string"},
            "budgetPhase": {"type": ["string", "null"]},
            "samplingRate": {"type": "number"},
            "reservation": _ref("Reservation"),
        },
    },
    "UsageReport": {
        "type": "object",
        "additionalProperties": False,
        "required": ["policy", "model", "inputTokens", "outputTokens"],
        "properties": {
            "policy": _NAME,
            "model": {"type": "string", "minLength": 1, "maxLength": 256},
            "inputTokens": {"type": "integer", "minimum": 0, "maximum": 100000000},
            "outputTokens": {"type": "integer", "minimum": 0, "maximum": 100000000},
            "incidentId": {"type": "string", "minLength": 1, "maxLength": 256},
            "reservationId": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "The reservation /v1/route returned: the cost replaces its hold.",
            },
            "taskType": {"type": "string", "minLength": 1, "maxLength": 128},
        },
    },
    "UsageRecorded": {
        "type": "object",
        "required": ["budget", "cost", "currency", "periodStart", "duplicate"],
        "properties": {
            "budget": {"type": "string"},
            "cost": _MONEY,
            "currency": {"type": "string"},
            "periodStart": {"type": "string", "format": "date-time"},
            "duplicate": {"type": "boolean", "description": "True when the Idempotency-Key was seen before."},
            "reservation": {
                "type": "object",
                "required": ["id", "outcome", "released"],
                "properties": {
                    "id": {"type": "string"},
                    "outcome": {
                        "type": "string",
                        "enum": ["settled", "expired"],
                        "description": "settled: the cost replaced the hold; expired: the hold was gone "
                        "(expired or released) and the cost was added on its own.",
                    },
                    "released": {"oneOf": [_MONEY, {"type": "null"}]},
                },
            },
        },
    },
    "TextBlock": {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 60000}},
    },
    "ConverseRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["policy", "taskType", "complexity", "messages"],
        "properties": {
            "policy": {**_NAME, "description": "The caller's own IncidentPolicy."},
            "taskType": {"type": "string", "minLength": 1, "maxLength": 128},
            "complexity": {"type": "number", "minimum": 0, "maximum": 1},
            "severity": {"type": "string", "minLength": 1, "maxLength": 31},
            "incidentId": {"type": "string", "minLength": 1, "maxLength": 256},
            "estimatedInputTokens": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100000000,
                "description": "Default: half a token per UTF-8 byte of the text, plus framing.",
            },
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"type": "string", "enum": ["user", "assistant"]},
                        "content": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 20,
                            "items": _ref("TextBlock"),
                        },
                    },
                },
                "description": "Bedrock Converse messages (text blocks); the first one is the user's.",
            },
            "system": {"type": "array", "minItems": 1, "maxItems": 20, "items": _ref("TextBlock")},
            "inferenceConfig": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "maxTokens": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 128000,
                        "description": "Default 1024; the reservation holds this many output tokens.",
                    },
                    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    "topP": {"type": "number", "minimum": 0, "maximum": 1},
                    "stopSequences": {
                        "type": "array",
                        "maxItems": 4,
                        "items": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                },
            },
        },
    },
    "ConverseAnswer": {
        "type": "object",
        "required": [
            "model",
            "reason",
            "budgetPhase",
            "output",
            "stopReason",
            "usage",
            "recorded",
            "reservation",
        ],
        "properties": {
            "model": {"type": "string"},
            "reason": {"type": "string"},
            "budgetPhase": {"type": ["string", "null"]},
            "output": {"type": "object", "description": "Bedrock's output: {message: {role, content}}."},
            "stopReason": {"type": "string"},
            "usage": {
                "type": "object",
                "required": ["inputTokens", "outputTokens", "totalTokens"],
                "properties": {
                    "inputTokens": {"type": "integer"},
                    "outputTokens": {"type": "integer"},
                    "totalTokens": {"type": "integer"},
                },
            },
            "cost": {"oneOf": [_MONEY, {"type": "null"}]},
            "currency": {"type": "string"},
            "recorded": {
                "type": "boolean",
                "description": "False when the ledger could not take the usage: report it to /v1/usage "
                "with the reservation id (recordError says why).",
            },
            "recordError": {"type": "string"},
            "reservation": _ref("Reservation"),
        },
    },
    "EffectiveRouting": {
        "type": "object",
        "required": ["mode", "simpleModel", "complexModel", "complexityThreshold", "samplingRate"],
        "properties": {
            "mode": {"type": "string"},
            "simpleModel": {"type": "string"},
            "complexModel": {"type": "string"},
            "complexityThreshold": {"type": "number"},
            "samplingRate": {"type": "number"},
            "budgetPhase": {"type": ["string", "null"]},
        },
    },
    "Budget": {
        "type": ["object", "null"],
        "properties": {
            "name": {"type": "string"},
            "phase": {"type": ["string", "null"]},
            "utilization": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$"},
            "total": _MONEY,
            "limit": _MONEY,
            "reserved": _MONEY,
            "byModel": {"type": "object", "additionalProperties": _MONEY},
            "byClient": {"type": "object", "additionalProperties": _MONEY},
            "byTaskType": {"type": "object", "additionalProperties": _MONEY},
        },
    },
    "Policy": {
        "type": "object",
        "required": ["namespace", "name", "effectiveRouting", "budget", "rateLimit", "apiKeys"],
        "properties": {
            "namespace": {"type": "string"},
            "name": {"type": "string"},
            "effectiveRouting": _ref("EffectiveRouting"),
            "budget": _ref("Budget"),
            "rateLimit": {
                "type": "object",
                "properties": {"requestsPerMinute": {"type": "integer"}, "burst": {"type": "integer"}},
            },
            "apiKeys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["client", "role", "keyId", "state", "issuedAt", "expiresAt"],
                    "properties": {
                        "client": {"type": "string"},
                        "role": {"type": "string", "enum": ["viewer", "responder", "admin"]},
                        "keyId": {"type": "string"},
                        "state": {"type": "string", "enum": ["Active", "Rotating", "Revoked", "Expired"]},
                        "issuedAt": {"type": "string", "format": "date-time"},
                        "expiresAt": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "Summary": {
        "type": "object",
        "required": [
            "namespace",
            "policy",
            "objects",
            "apiKeys",
            "budget",
            "routing",
            "usageReports",
            "recent",
        ],
        "properties": {
            "namespace": {"type": "string"},
            "policy": {"type": "string"},
            "objects": {
                "type": "object",
                "description": "Objects of each kind in the namespace, by Ready state.",
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "apiKeys": {"type": "object", "additionalProperties": {"type": "integer"}},
            "budget": _ref("Budget"),
            "routing": {
                "type": "object",
                "properties": {"decisions": {"type": "integer"}, "refusals": {"type": "integer"}},
            },
            "usageReports": {"type": "integer"},
            "recent": {"type": "array", "items": {"type": "object"}},
        },
    },
    "History": {
        "type": "object",
        "required": ["namespace", "policy", "entries"],
        "properties": {
            "namespace": {"type": "string"},
            "policy": {"type": "string"},
            "entries": {"type": "array", "items": {"type": "object"}},
        },
    },
}


# -- /v1/incidents (docs/incidents.md) ------------------------------------------------------------------

_INCIDENT_ID = {"type": "string", "pattern": "^inc-[0-9a-f]{22}$"}
_STATUS = "(open|acknowledged|resolved|closed)"
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_ACTOR = {"oneOf": [_ref("Actor"), {"type": "null"}]}
_PRECONDITION_FAILED = _error("If-Match named another version: the incident changed; read it again.")
_ILLEGAL = _error(
    "The incident or proposal does not allow this now (IllegalTransition, AlreadyAcknowledged, "
    "AlreadyResolved, AlreadyClosed, ResolutionRequired, SelfApproval, AlreadyApproved, QuorumReached, "
    "ProposalExpired, ...), or it kept changing (Conflict)."
)
_STORAGE = _error(
    "The policy's AwsConnection or incident storage is not available (ConnectionNotReady, StorageNotReady, "
    "StorageUnavailable), or this replica is not ready.",
    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
)
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": 'The incident\'s version, "<n>".'}}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 16},
    "description": 'The ETag ("<version>") the change was decided from; 412 when the incident moved on.',
}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": _INCIDENT_ID}
_PROPOSAL_PARAM = {
    "name": "proposal",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^prop-[0-9a-f]{16}$"},
}
_ARTIFACT_PARAM = {
    "name": "artifact",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^art-[0-9a-f]{16}$"},
}
_RESOLUTION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "summary"],
    "properties": {
        "code": {"type": "string", "enum": ["fixed", "mitigated", "false_positive", "duplicate", "wont_fix"]},
        "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
    },
}

INCIDENT_SCHEMAS: dict[str, Any] = {
    "Actor": {
        "type": "object",
        "required": ["client", "role"],
        "properties": {
            "client": {"type": "string", "description": "An API client of the policy, or consensus/policy."},
            "role": {"type": "string", "description": "viewer, responder, admin, or system."},
        },
    },
    "Resolution": _RESOLUTION,
    "Artifact": {
        "type": "object",
        "required": ["id", "name", "contentType", "key", "attachedAt", "attachedBy"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "contentType": {"type": "string"},
            "key": {"type": "string", "description": "The object key in the policy's artifact bucket."},
            "attachedAt": {"type": "string", "format": "date-time"},
            "attachedBy": _ref("Actor"),
        },
    },
    "Proposal": {
        "type": "object",
        "required": ["id", "action", "description", "proposedBy", "proposedAt", "mode", "quorum", "state"],
        "properties": {
            "id": {"type": "string"},
            "action": {"type": "object"},
            "description": {"type": "string"},
            "proposedBy": _ref("Actor"),
            "proposedAt": {"type": "string", "format": "date-time"},
            "mode": {"type": "string", "enum": ["quorum", "autoRemediate", "notRequired"]},
            "quorum": {"type": "integer", "description": "Distinct approvers needed (0: approved at once)."},
            "state": {
                "type": "string",
                "enum": ["Pending", "Approving", "Approved", "Refused", "Expired", "Failed"],
            },
            "approvals": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"by": _ref("Actor"), "at": {"type": "string", "format": "date-time"}},
                },
            },
            "timeoutSeconds": {"type": "integer"},
            "deadline": {"type": "string", "format": "date-time"},
            "decidedAt": _NULLABLE_TIME,
            "decidedBy": _ACTOR,
            "reason": {"type": ["string", "null"]},
        },
    },
    "Incident": {
        "type": "object",
        "required": ["id", "title", "severity", "status", "version", "openedAt", "openedBy"],
        "properties": {
            "id": _INCIDENT_ID,
            "title": {"type": "string"},
            "severity": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "acknowledged", "resolved", "closed"]},
            "version": {"type": "integer", "description": "Raised by every change; the ETag."},
            "description": {"type": "string"},
            "source": {"type": "string"},
            "dedupKey": {"type": ["string", "null"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "detections": {"type": "integer", "description": "Detections joined into this incident."},
            "lastDetectedAt": _NULLABLE_TIME,
            "openedAt": {"type": "string", "format": "date-time"},
            "openedBy": _ref("Actor"),
            "acknowledgedAt": _NULLABLE_TIME,
            "acknowledgedBy": _ACTOR,
            "resolvedAt": _NULLABLE_TIME,
            "resolvedBy": _ACTOR,
            "closedAt": _NULLABLE_TIME,
            "closedBy": _ACTOR,
            "resolution": {"oneOf": [_ref("Resolution"), {"type": "null"}]},
            "updatedAt": _NULLABLE_TIME,
            "artifacts": {"type": "array", "items": _ref("Artifact")},
            "proposals": {"type": "array", "items": _ref("Proposal")},
            "pendingEvents": {"type": "integer", "description": "Changes not yet published to the stream."},
        },
    },
    "OpenIncident": {
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "severity"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "severity": {
                "type": "string",
                "minLength": 1,
                "maxLength": 31,
                "description": "One of the policy's.",
            },
            "description": {"type": "string", "minLength": 1, "maxLength": 4000},
            "source": {"type": "string", "minLength": 1, "maxLength": 200},
            "dedupKey": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "description": "A detection with an active incident's key joins it instead of opening one.",
            },
            "labels": {
                "type": "object",
                "maxProperties": 20,
                "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"},
                "additionalProperties": {"type": "string", "maxLength": 256},
            },
        },
    },
    "OpenOutcome": {
        "type": "object",
        "required": ["outcome", "samplingRate", "incident"],
        "properties": {
            "outcome": {"type": "string", "enum": ["opened", "deduplicated", "sampled_out", "halted"]},
            "samplingRate": {"type": "number"},
            "budgetPhase": {"type": ["string", "null"]},
            "incident": {"oneOf": [_ref("Incident"), {"type": "null"}]},
        },
    },
    "IncidentList": {
        "type": "object",
        "required": ["incidents", "nextCursor"],
        "properties": {
            "incidents": {"type": "array", "items": _ref("Incident")},
            "nextCursor": {"type": ["string", "null"]},
        },
    },
    "Audit": {
        "type": "object",
        "required": ["incidentId", "entries", "nextAfter"],
        "properties": {
            "incidentId": {"type": "string"},
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["eventId", "incidentId", "version", "action", "at", "by"],
                    "properties": {
                        "eventId": {"type": "string"},
                        "incidentId": {"type": "string"},
                        "version": {"type": "integer"},
                        "action": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                        "by": _ref("Actor"),
                        "severity": {"type": "string"},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "details": {"type": "object"},
                    },
                },
            },
            "nextAfter": {"type": ["integer", "null"]},
        },
    },
    "ResolveRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["resolution"],
        "properties": {"resolution": _ref("Resolution")},
    },
    "CloseRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"resolution": _ref("Resolution")},
    },
    "Empty": {"type": "object", "additionalProperties": False, "maxProperties": 0},
    "AttachRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "contentType"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"},
            "contentType": {
                "type": "string",
                "maxLength": 127,
                "pattern": "^[a-z0-9][a-z0-9!#$&.+^_-]{0,62}/[a-z0-9][a-z0-9!#$&.+^_-]{0,62}$",
            },
        },
    },
    "PresignedUrl": {
        "type": "object",
        "required": ["url", "method", "headers", "expiresAt"],
        "properties": {
            "url": {"type": "string"},
            "method": {"type": "string", "enum": ["GET", "PUT"]},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "expiresAt": {"type": "string", "format": "date-time"},
        },
    },
    "Attached": {
        "type": "object",
        "required": ["incident", "artifact", "upload"],
        "properties": {
            "incident": _ref("Incident"),
            "artifact": _ref("Artifact"),
            "upload": _ref("PresignedUrl"),
        },
    },
    "ArtifactDownload": {
        "type": "object",
        "required": ["artifact", "download"],
        "properties": {"artifact": _ref("Artifact"), "download": _ref("PresignedUrl")},
    },
    "ProposeRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "description"],
        "properties": {
            "action": {"type": "object", "minProperties": 1, "description": "What the agent would do."},
            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
            "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 604800, "default": 3600},
        },
    },
    "RefuseRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["reason"],
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
    },
    "ProposalAnswer": {
        "type": "object",
        "required": ["incidentId", "incidentVersion", "proposal"],
        "properties": {
            "incidentId": {"type": "string"},
            "incidentVersion": {"type": "integer"},
            "proposal": _ref("Proposal"),
        },
    },
    "IncidentSummary": {
        "type": "object",
        "required": ["window"],
        "properties": {
            "window": {"type": "string"},
            "windowSeconds": {"type": "integer"},
            "mttr": {
                "type": "object",
                "description": "Per severity: resolutions in the window, p50 and p90 time to resolve.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer"},
                        "p50Seconds": {"type": ["number", "null"]},
                        "p90Seconds": {"type": ["number", "null"]},
                    },
                },
            },
            "resolved": {"type": "integer"},
            "truncated": {"type": "boolean"},
            "open": {"type": "object", "additionalProperties": {"type": "integer"}},
            "error": {
                "type": "string",
                "description": "Why the figures are missing (storage not ready, ...).",
            },
            "message": {"type": "string"},
        },
    },
}
SCHEMAS.update(INCIDENT_SCHEMAS)
SCHEMAS["Summary"]["properties"]["incidents"] = _ref("IncidentSummary")


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _answer(schema: str, description: str, *, etag: bool = True) -> dict[str, Any]:
    answer = _json(_ref(schema), description)
    if etag:
        answer["headers"] = _ETAG
    return answer


def _change(summary: str, operation: str, *, body: str, required: bool, ok: dict[str, Any]) -> dict[str, Any]:
    """A POST that changes one incident (responder and above)."""
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "security": _SECURED,
            "parameters": [_ID_PARAM, _IF_MATCH],
            "requestBody": _body(body, required=required),
            "responses": {
                **ok,
                "400": _BAD_REQUEST,
                "401": _UNAUTHORIZED,
                "403": _FORBIDDEN,
                "404": _error("No such incident in this policy."),
                "409": _ILLEGAL,
                "412": _PRECONDITION_FAILED,
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "429": _RATE_LIMITED,
                "503": _STORAGE,
            },
        }
    }


def _proposal_change(summary: str, operation: str, *, body: str, required: bool) -> dict[str, Any]:
    item = _change(
        summary,
        operation,
        body=body,
        required=required,
        ok={"200": _answer("ProposalAnswer", "The proposal after the change (and any decision it led to).")},
    )
    item["post"]["parameters"] = [_ID_PARAM, _PROPOSAL_PARAM, _IF_MATCH]
    item["post"]["responses"]["404"] = _error("No such incident or proposal in this policy.")
    return item


def _read(
    summary: str, operation: str, schema: str, parameters: list[Any], *, etag: bool = True
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "security": _SECURED,
            "parameters": parameters,
            "responses": {
                "200": _answer(schema, "Found.", etag=etag),
                "401": _UNAUTHORIZED,
                "404": _error("Not found in this policy."),
                "429": _RATE_LIMITED,
                "503": _STORAGE,
            },
        }
    }


def _incident_paths() -> dict[str, Any]:
    audit = _read(
        "An incident's audit trail, oldest first (viewer and above)",
        "getIncidentAudit",
        "Audit",
        [
            _ID_PARAM,
            {"name": "after", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
        ],
        etag=False,
    )
    audit["get"]["responses"]["400"] = _BAD_REQUEST
    return {
        "/v1/incidents": {
            "post": {
                "summary": "Report a detection: open an incident, join one, or not (responder and above)",
                "operationId": "openIncident",
                "security": _SECURED,
                "requestBody": _body("OpenIncident"),
                "responses": {
                    "200": _json(
                        _ref("OpenOutcome"),
                        "Joined the active incident with this dedupKey, or not opened (sampled out, halted).",
                    ),
                    "201": _answer("OpenOutcome", "Opened."),
                    "400": _BAD_REQUEST,
                    "401": _UNAUTHORIZED,
                    "403": _FORBIDDEN,
                    "409": _error(
                        "A concurrent detection with the same dedupKey was still being written; retry."
                    ),
                    "413": _TOO_LARGE,
                    "415": _NOT_JSON,
                    "422": _error("The severity is not one of the policy's."),
                    "429": _RATE_LIMITED,
                    "503": _STORAGE,
                },
            },
            "get": {
                "summary": "Incidents newest first, by status and severity (viewer and above)",
                "operationId": "listIncidents",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "pattern": f"^{_STATUS}(,{_STATUS})*$",
                        },
                        "description": "Comma-separated statuses (default: all).",
                    },
                    {
                        "name": "severity",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 31},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                        "description": "nextCursor of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json(_ref("IncidentList"), "A page of incidents."),
                    "400": _BAD_REQUEST,
                    "401": _UNAUTHORIZED,
                    "422": _error("The severity is not one of the policy's."),
                    "429": _RATE_LIMITED,
                    "503": _STORAGE,
                },
            },
        },
        "/v1/incidents/{id}": _read(
            "One incident (viewer and above)", "getIncident", "Incident", [_ID_PARAM]
        ),
        "/v1/incidents/{id}/audit": audit,
        "/v1/incidents/{id}/acknowledge": _change(
            "Acknowledge an open incident",
            "acknowledgeIncident",
            body="Empty",
            required=False,
            ok={"200": _answer("Incident", "Acknowledged.")},
        ),
        "/v1/incidents/{id}/resolve": _change(
            "Resolve an open or acknowledged incident, with a resolution",
            "resolveIncident",
            body="ResolveRequest",
            required=True,
            ok={"200": _answer("Incident", "Resolved.")},
        ),
        "/v1/incidents/{id}/close": _change(
            "Close a resolved incident (or an active one, with a resolution)",
            "closeIncident",
            body="CloseRequest",
            required=False,
            ok={"200": _answer("Incident", "Closed.")},
        ),
        "/v1/incidents/{id}/artifacts": _change(
            "Attach an artifact: its record, and a presigned URL to upload it to the policy's bucket",
            "attachArtifact",
            body="AttachRequest",
            required=True,
            ok={"201": _answer("Attached", "Attached; PUT the content to upload.url with upload.headers.")},
        ),
        "/v1/incidents/{id}/artifacts/{artifact}": _read(
            "A presigned URL to download an artifact (viewer and above)",
            "getArtifact",
            "ArtifactDownload",
            [_ID_PARAM, _ARTIFACT_PARAM],
            etag=False,
        ),
        "/v1/incidents/{id}/proposals": _change(
            "Propose a remediation: approved at once, or by a quorum of distinct responders",
            "proposeRemediation",
            body="ProposeRequest",
            required=True,
            ok={"201": _answer("ProposalAnswer", "Proposed.")},
        ),
        "/v1/incidents/{id}/proposals/{proposal}": _read(
            "A proposal, settled with its consensus workflow first when a decision is due (viewer and above)",
            "getProposal",
            "ProposalAnswer",
            [_ID_PARAM, _PROPOSAL_PARAM],
        ),
        "/v1/incidents/{id}/proposals/{proposal}/approve": _proposal_change(
            "Approve a proposal (not its proposer; once per responder)",
            "approveProposal",
            body="Empty",
            required=False,
        ),
        "/v1/incidents/{id}/proposals/{proposal}/refuse": _proposal_change(
            "Refuse a pending proposal", "refuseProposal", body="RefuseRequest", required=True
        ),
    }


_NOT_READY = _error(
    "This replica's view is not current yet (starting, or cut off from Kubernetes): retry, here or "
    "on another replica.",
    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
)
_SLOW_BODY = _error("The body did not arrive within the idle timeout.")


_CONVERSE_ERRORS: dict[str, Any] = {
    "400": _BAD_REQUEST,
    "401": _UNAUTHORIZED,
    "402": _REFUSED,
    "403": _FORBIDDEN,
    "409": _error("The policy has no budgetRef: a metered call needs a budget."),
    "413": _TOO_LARGE,
    "415": _NOT_JSON,
    "422": _error(
        "The routed model has no price (UnknownModel), or Bedrock refused the request (ModelRequestRejected)."
    ),
    "429": _error(
        "The client's token bucket is empty, or Bedrock throttled the call (ModelThrottled).",
        headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
    ),
    "502": _error(
        "Bedrock failed or refused the operator's credentials (ModelCallFailed, ModelAccessDenied)."
    ),
    "503": _error(
        "The budget, its ledger, the AwsConnection or the model is not available; retry.",
        headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
    ),
    "504": _error("Bedrock did not answer in time (ModelTimeout); the reservation was released."),
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route: every route but the probes and this document may
    answer 503 while the replica is not ready, and every route with a body 408."""
    built = _document()
    for path, item in built["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            if path not in ("/readyz", "/healthz", "/v1/openapi.json"):
                responses.setdefault("503", _NOT_READY)
            if "requestBody" in operation:
                responses.setdefault("408", _SLOW_BODY)
    return built


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "incident-commander operator API",
            "version": __version__,
            "description": (
                "Exchanges API keys for short-lived JWTs, answers model-routing decisions under the "
                "budget's action, records LLM usage into the budget ledger, reports policy state, and "
                "keeps the policy's incidents (lifecycle, artifacts, remediation approval). "
                "Every credential is scoped to one IncidentPolicy."
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`ApiKey ick_<keyId>_<secret>` from the client's Secret.",
                },
            },
            "schemas": SCHEMAS,
        },
        "paths": {
            "/v1/token": {
                "post": {
                    "summary": "Exchange an API key for a JWT",
                    "operationId": "issueToken",
                    "security": [{"apiKey": []}],
                    "responses": {
                        "200": _json(_ref("Token"), "A signed token for the key's client."),
                        "401": _UNAUTHORIZED,
                        "429": _RATE_LIMITED,
                        "503": _error("The policy has no signing key yet."),
                    },
                }
            },
            "/v1/token/refresh": {
                "post": {
                    "summary": "A new JWT for a valid one, while its API key is the client's current key",
                    "operationId": "refreshToken",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _json(
                            _ref("Token"), "A new signed token; the old one stays valid until it expires."
                        ),
                        "401": _UNAUTHORIZED,
                        "429": _RATE_LIMITED,
                        "503": _error("The policy has no signing key yet, or this replica is not ready."),
                    },
                }
            },
            "/v1/jwks/{namespace}/{policy}": {
                "get": {
                    "summary": "The policy's public signing keys",
                    "operationId": "getJwks",
                    "security": [],
                    "parameters": [
                        *_PATH_PARAMS,
                        {"name": "policy", "in": "path", "required": True, "schema": _NAME},
                    ],
                    "responses": {
                        "200": _json(
                            _ref("Jwks"),
                            "A JSON Web Key Set; empty for a policy without keys or that does not exist.",
                        ),
                    },
                }
            },
            "/v1/route": {
                "post": {
                    "summary": "Choose a model for a task (responder and above)",
                    "operationId": "route",
                    "security": _SECURED,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RouteRequest")}},
                    },
                    "responses": {
                        "200": _json(
                            _ref("RouteDecision"),
                            "The model to use and why, and the reservation of its cost.",
                        ),
                        "400": _BAD_REQUEST,
                        "401": _UNAUTHORIZED,
                        "402": _REFUSED,
                        "403": _FORBIDDEN,
                        "413": _TOO_LARGE,
                        "415": _NOT_JSON,
                        "422": _error("The routed model has no price in the budget."),
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/usage": {
                "post": {
                    "summary": "Record LLM usage into the budget ledger (responder and above)",
                    "operationId": "recordUsage",
                    "security": _SECURED,
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                            "description": "A retried report with the same key is counted once.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("UsageReport")}},
                    },
                    "responses": {
                        "200": _json(_ref("UsageRecorded"), "Already recorded under this Idempotency-Key."),
                        "201": _json(_ref("UsageRecorded"), "Recorded."),
                        "400": _BAD_REQUEST,
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                        "409": _error(
                            "The policy has no budgetRef (NoBudget), or the Idempotency-Key (or the "
                            "reservation) was already used for a different report (IdempotencyKeyReused)."
                        ),
                        "413": _TOO_LARGE,
                        "415": _NOT_JSON,
                        "422": _error("The budget has no price for this model, or its currency differs."),
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/v1/converse": {
                "post": {
                    "summary": "Call Bedrock Converse with the routed model, metered (responder and above)",
                    "operationId": "converse",
                    "security": _SECURED,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ConverseRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("ConverseAnswer"), "The model's answer, its usage and cost."),
                        **_CONVERSE_ERRORS,
                    },
                }
            },
            "/v1/converse/stream": {
                "post": {
                    "summary": "The same call, streamed as server-sent events (responder and above)",
                    "operationId": "converseStream",
                    "security": _SECURED,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ConverseRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": (
                                "Server-sent events: route (model, reservation), delta ({text}) for each "
                                "piece of the answer, stop ({stopReason}), then usage (token counts, "
                                "cost, reservation) or error ({error, message}) when the stream fails "
                                "after it started."
                            ),
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_CONVERSE_ERRORS,
                    },
                }
            },
            "/v1/policies/{namespace}/{name}": {
                "get": {
                    "summary": "Effective routing, budget state and key states (viewer and above)",
                    "operationId": "getPolicy",
                    "security": _SECURED,
                    "parameters": [
                        *_PATH_PARAMS,
                        {"name": "name", "in": "path", "required": True, "schema": _NAME},
                    ],
                    "responses": {
                        "200": _json(_ref("Policy"), "The policy as the API enforces it."),
                        "401": _UNAUTHORIZED,
                        "403": _FORBIDDEN,
                        "404": _error("No such policy."),
                        "429": _RATE_LIMITED,
                    },
                }
            },
            "/v1/summary": {
                "get": {
                    "summary": "Counts by state, budget utilisation, recent decisions (viewer and above)",
                    "operationId": "getSummary",
                    "security": _SECURED,
                    "responses": {
                        "200": _json(_ref("Summary"), "The caller's policy and namespace at a glance."),
                        "401": _UNAUTHORIZED,
                        "429": _RATE_LIMITED,
                    },
                }
            },
            "/v1/history": {
                "get": {
                    "summary": "Recent routing decisions and usage reports (viewer and above)",
                    "operationId": "getHistory",
                    "security": _SECURED,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("History"), "Newest first."),
                        "400": _BAD_REQUEST,
                        "401": _UNAUTHORIZED,
                        "429": _RATE_LIMITED,
                    },
                }
            },
            **_incident_paths(),
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "getOpenApi",
                    "security": [],
                    "responses": {
                        "200": {"description": "The OpenAPI document.", "content": {"application/json": {}}}
                    },
                }
            },
        },
    }


def render() -> str:
    """The document as written to docs/openapi.json."""
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"
