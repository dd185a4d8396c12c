"""Incidents in the policy's DynamoDB table, their events in its Kinesis stream. Blocking: run in a thread.

**The write order** (docs/incidents.md, "Crash safety"). A change is one ``TransactWriteItems``:
the incident's item, conditional on the version the change was planned from (the ETag); the audit
entry of the new version, which must not exist yet; the outbox item's ``upTo`` raised to the new
version; and whatever else the change touches (a proposal, a dedup key, a resolution record).
DynamoDB applies all of it or none, so the state and the audit trail cannot disagree. Publishing
comes after: ``flush`` reads the outbox, puts the events the stream has not had, in version order,
one ``PutRecord`` each with the incident id as partition key, and then raises ``publishedUpTo``.
A process killed anywhere leaves either no change at all, or a change whose events are still in
the outbox: the next write of the incident, a read, or the leader's sweeper publishes them. An
event may so reach the stream twice (killed after ``PutRecord``, before ``publishedUpTo``), never
out of order and never lost: its ``eventId`` (``<incident>:<version>``) makes a consumer's retry
check trivial (apply only versions above the last one applied).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from incident_commander.aws.errors import classify
from incident_commander.incidents.model import (
    ACTIVE,
    OUTBOX_MARKER,
    PENDING_MARKER,
    RESOLVED_MARKER,
    Change,
    Incident,
    audit_sort_key,
    dedup_key_item,
    head_key,
    incident_from_items,
    partition,
)
from incident_commander.storage.provisioner import STATUS_INDEX
from incident_commander.timestamps import precise_time

OUTBOX_SORT_KEY = "O"
TRANSACTION_RETRIES = 4
"""Retries of a transaction DynamoDB cancelled for a concurrent transaction on one of its items
(``TransactionConflict``): not a version conflict, so it is retried here, with jitter."""
MAX_PAGES = 50
"""Pages one listing, count or sweep reads at most: each is a request, and a request is bounded."""

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class StoreError(Exception):
    """DynamoDB or Kinesis failed; ``reason`` is a short code, ``missing`` true when the table,
    stream or index does not exist (the policy's storage is not provisioned, or drifted)."""

    def __init__(self, reason: str, message: str, *, missing: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.missing = missing


class VersionConflict(Exception):
    """The incident's version is not the one the change was planned from."""


class DedupTaken(Exception):
    """Another incident holds the dedup key (a concurrent open won)."""

    def __init__(self, incident_id: str | None) -> None:
        super().__init__(incident_id or "")
        self.incident_id = incident_id


def _plain(value: Any) -> Any:
    """Python values as DynamoDB takes them: floats become Decimals, None is dropped from maps."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_attribute(value: Any) -> dict[str, Any]:
    return _serializer.serialize(_plain(value))  # type: ignore[no-any-return]


def to_item(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in data.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def jsonable(value: Any) -> Any:
    """Values read from DynamoDB as JSON takes them: integral Decimals as ints, others as floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return value


def sortable_time(moment: datetime) -> str:
    """Fixed width, so that strings sort as the times do (precise_time drops zero microseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _failure(exc: Exception, what: str) -> StoreError:
    if isinstance(exc, ClientError) and _code(exc) == "ResourceNotFoundException":
        return StoreError(
            "StorageNotFound", f"{what} does not exist: see the policy's StorageReady", missing=True
        )
    if isinstance(exc, ClientError) and _code(exc) == "ValidationException" and "index" in str(exc).lower():
        return StoreError(
            "StorageDrifted",
            f"{what} lacks the {STATUS_INDEX} index: see the policy's storage status",
            missing=True,
        )
    error = classify(exc)
    return StoreError(error.reason, f"{what}: {error.message}")


def _names(path: str, names: dict[str, str]) -> str:
    """``#a.#b`` for the attribute path ``a.b``, with the names registered."""
    parts = []
    for part in path.split("."):
        alias = f"#n{len(names)}"
        for known, value in names.items():
            if value == part:
                alias = known
                break
        else:
            names[alias] = part
        parts.append(alias)
    return ".".join(parts)


@dataclass(frozen=True, kw_only=True)
class Update:
    """An UpdateItem (also a transaction's Update) built from attribute paths."""

    expression: str
    names: dict[str, str]
    values: dict[str, Any]


def build_update(set_: Mapping[str, Any], remove: Sequence[str] = (), **extra_values: Any) -> Update:
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for index, (path, value) in enumerate(set_.items()):
        values[f":v{index}"] = to_attribute(value)
        sets.append(f"{_names(path, names)} = :v{index}")
    removes = [_names(path, names) for path in remove]
    expression = ""
    if sets:
        expression += "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    for key, value in extra_values.items():
        values[f":{key}"] = to_attribute(value)
    return Update(expression=expression.strip(), names=names, values=values)


def _with_condition(update: Update, condition: str, names: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(update.names)
    for alias, name in names.items():
        merged[alias] = name
    return {
        "UpdateExpression": update.expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": merged,
        **({"ExpressionAttributeValues": update.values} if update.values else {}),
    }


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The sort key a cursor continues after, or None for a cursor this API did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not text.startswith("I#inc-") or len(text) > 64 or not text[2:].replace("-", "").isalnum():
        return None
    return text


class IncidentStore:
    """One policy's incidents: its table and its stream, through the connection's clients."""

    def __init__(self, *, dynamodb: Any, kinesis: Any, table: str, stream: str) -> None:
        self.dynamodb = dynamodb
        self.kinesis = kinesis
        self.table = table
        self.stream = stream

    # -- reads -----------------------------------------------------------------------------------
    def _query(self, **params: Any) -> Iterator[dict[str, Any]]:
        params = {"TableName": self.table, **params}
        for _ in range(MAX_PAGES):
            try:
                page = self.dynamodb.query(**params)
            except Exception as exc:
                raise _failure(exc, f"DynamoDB table {self.table}") from None
            for item in page.get("Items", []):
                yield from_item(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def read(self, incident_id: str) -> Incident | None:
        """The incident with its proposals and outbox (one strongly consistent query), or None."""
        items = list(
            self._query(
                KeyConditionExpression="pk = :pk AND sk < :audit",
                ExpressionAttributeValues={":pk": {"S": partition(incident_id)}, ":audit": {"S": "T"}},
                ConsistentRead=True,
            )
        )
        head = next((i for i in items if i["sk"] == partition(incident_id)), None)
        if head is None:
            return None
        proposals = [i for i in items if str(i["sk"]).startswith("P#")]
        outbox = next((i for i in items if i["sk"] == OUTBOX_SORT_KEY), None)
        return incident_from_items(head, proposals, outbox)

    def dedup_holder(self, key: str) -> str | None:
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key=to_item(dedup_key_item(key)), ConsistentRead=True
            ).get("Item")
        except Exception as exc:
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        return str(from_item(item)["incidentId"]) if item else None

    def task_token(self, incident_id: str, proposal_id: str) -> str | None:
        """The token the state machine wrote into the proposal's item, once it has."""
        try:
            item = self.dynamodb.get_item(
                TableName=self.table,
                Key=to_item({"pk": partition(incident_id), "sk": f"P#{proposal_id}"}),
                ConsistentRead=True,
                ProjectionExpression="taskToken",
            ).get("Item")
        except Exception as exc:
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        token = from_item(item).get("taskToken") if item else None
        return str(token) if token else None

    def list_incidents(
        self, *, statuses: Sequence[str], severity: str | None, limit: int, after: str | None
    ) -> tuple[list[Incident], str | None]:
        """Incidents newest first from the ``by-status`` index (eventually consistent), ``limit`` at
        most, continuing after the sort key ``after``; with the sort key to continue from, if more."""
        high = after or "I#~"
        found: list[dict[str, Any]] = []
        for status in statuses:
            params: dict[str, Any] = {
                "IndexName": STATUS_INDEX,
                "KeyConditionExpression": "#status = :status AND sk BETWEEN :low AND :high",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":status": {"S": status},
                    ":low": {"S": "I#"},
                    ":high": {"S": high},
                },
                "ScanIndexForward": False,
                "Limit": limit + 1,
            }
            if severity is not None:
                params["FilterExpression"] = "severity = :severity"
                params["ExpressionAttributeValues"][":severity"] = {"S": severity}
            taken = 0
            for item in self._query(**params):
                if item["sk"] == after:
                    continue
                found.append(item)
                taken += 1
                if taken > limit:
                    break
        found.sort(key=lambda i: str(i["sk"]), reverse=True)
        page = found[:limit]
        more = len(found) > limit
        return [incident_from_items(i) for i in page], (str(page[-1]["sk"]) if more and page else None)

    def audit(self, incident_id: str, *, after_version: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Audit entries after ``after_version``, oldest first (strongly consistent)."""
        try:
            page = self.dynamodb.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":pk": {"S": partition(incident_id)},
                    ":low": {"S": audit_sort_key(after_version + 1)},
                    ":high": {"S": audit_sort_key(9_999_999_999)},
                },
                ConsistentRead=True,
                Limit=limit,
            )
        except Exception as exc:
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        entries = [event_of(from_item(i)) for i in page.get("Items", [])]
        return entries, bool(page.get("LastEvaluatedKey"))

    def resolutions(
        self, *, since: datetime, until: datetime, max_items: int
    ) -> tuple[list[tuple[str, float]], bool]:
        """(severity, seconds to resolve) of the incidents first resolved in [since, until]."""
        samples: list[tuple[str, float]] = []
        for item in self._query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status AND sk BETWEEN :low AND :high",
            ExpressionAttributeNames={"#status": "status", "#seconds": "seconds"},
            ExpressionAttributeValues={
                ":status": {"S": RESOLVED_MARKER},
                ":low": {"S": f"R#{sortable_time(since)}"},
                ":high": {"S": f"R#{sortable_time(until)}~"},
            },
            ProjectionExpression="severity, #seconds",
        ):
            samples.append((str(item.get("severity")), float(item.get("seconds") or 0)))
            if len(samples) >= max_items:
                return samples, True
        return samples, False

    def open_counts(self) -> dict[str, int]:
        """Active (open or acknowledged) incidents by severity, from the index."""
        counts: dict[str, int] = {}
        for status in ACTIVE:
            for item in self._query(
                IndexName=STATUS_INDEX,
                KeyConditionExpression="#status = :status AND begins_with(sk, :incident)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": status}, ":incident": {"S": "I#"}},
                ProjectionExpression="severity",
            ):
                severity = str(item.get("severity"))
                counts[severity] = counts.get(severity, 0) + 1
        return counts

    def unpublished(self) -> list[str]:
        """Incidents whose outbox holds events not yet in the stream."""
        return sorted(
            {
                str(item["pk"])[2:]
                for item in self._query(
                    IndexName=STATUS_INDEX,
                    KeyConditionExpression="#status = :status",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":status": {"S": OUTBOX_MARKER}},
                    ProjectionExpression="pk",
                )
            }
        )

    def unsettled_proposals(self) -> list[tuple[str, str]]:
        """(incident, proposal) pairs whose state machine still has to be started, told or heard."""
        return sorted(
            (str(item["pk"])[2:], str(item["sk"])[2:])
            for item in self._query(
                IndexName=STATUS_INDEX,
                KeyConditionExpression="#status = :status",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": PENDING_MARKER}},
                ProjectionExpression="pk, sk",
            )
        )

    # -- writes ----------------------------------------------------------------------------------
    def transaction(self, change: Change, *, dedup_stale: str | None = None) -> list[dict[str, Any]]:
        """The TransactItems that write ``change`` (public for the benchmark's floor)."""
        table = self.table
        items: list[dict[str, Any]] = []
        if change.expected_version == 0:
            items.append(
                {
                    "Put": {
                        "TableName": table,
                        "Item": to_item(change.head),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            if change.incident.dedup_key:
                dedup = {
                    **dedup_key_item(change.incident.dedup_key),
                    "incidentId": change.incident_id,
                    "createdAt": change.event["at"],
                }
                put: dict[str, Any] = {"TableName": table, "Item": to_item(dedup)}
                if dedup_stale is None:
                    put["ConditionExpression"] = "attribute_not_exists(pk)"
                else:
                    put["ConditionExpression"] = "incidentId = :stale"
                    put["ExpressionAttributeValues"] = {":stale": {"S": dedup_stale}}
                items.append({"Put": put})
        else:
            update = build_update(change.head, expected=change.expected_version)
            items.append(
                {
                    "Update": {
                        "TableName": table,
                        "Key": to_item(head_key(change.incident_id)),
                        **_with_condition(update, "#version = :expected", {"#version": "version"}),
                    }
                }
            )
        items.append(
            {
                "Put": {
                    "TableName": table,
                    "Item": to_item(
                        {
                            "pk": partition(change.incident_id),
                            "sk": audit_sort_key(change.version),
                            "type": "event",
                            **change.event,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": to_item({"pk": partition(change.incident_id), "sk": OUTBOX_SORT_KEY}),
                    "UpdateExpression": "SET upTo = :v, #status = :outbox, "
                    "publishedUpTo = if_not_exists(publishedUpTo, :zero)",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":v": {"N": str(change.version)},
                        ":outbox": {"S": OUTBOX_MARKER},
                        ":zero": {"N": "0"},
                    },
                }
            }
        )
        if change.proposal is not None:
            key = {"pk": partition(change.incident_id), "sk": f"P#{change.proposal.proposal_id}"}
            if change.proposal.create:
                items.append(
                    {
                        "Put": {
                            "TableName": table,
                            "Item": to_item(change.proposal.set),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
            else:
                update = build_update(change.proposal.set, change.proposal.remove)
                items.append(
                    {
                        "Update": {
                            "TableName": table,
                            "Key": to_item(key),
                            **_with_condition(update, "attribute_exists(pk)", {}),
                        }
                    }
                )
        if change.release_dedup:
            items.append(
                {
                    "Delete": {
                        "TableName": table,
                        "Key": to_item(dedup_key_item(change.release_dedup)),
                        "ConditionExpression": "attribute_not_exists(pk) OR incidentId = :id",
                        "ExpressionAttributeValues": {":id": {"S": change.incident_id}},
                    }
                }
            )
        if change.resolution_marker is not None:
            at, seconds = change.resolution_marker
            items.append(
                {
                    "Put": {
                        "TableName": table,
                        "Item": to_item(
                            {
                                "pk": partition(change.incident_id),
                                "sk": f"R#{sortable_time(at)}#{change.incident_id}",
                                "status": RESOLVED_MARKER,
                                "incidentId": change.incident_id,
                                "severity": change.incident.severity,
                                "seconds": round(seconds, 3),
                            }
                        ),
                    }
                }
            )
        return items

    def commit(self, change: Change, *, dedup_stale: str | None = None) -> None:
        """Write ``change`` in one transaction; VersionConflict when the incident moved on (or, on
        open, exists), DedupTaken when another incident holds the dedup key."""
        items = self.transaction(change, dedup_stale=dedup_stale)
        for attempt in range(TRANSACTION_RETRIES + 1):
            try:
                self.dynamodb.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise _failure(exc, f"DynamoDB table {self.table}") from None
                reasons = [
                    str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons") or []
                ]
                if "ConditionalCheckFailed" in reasons and self._applied(change):
                    return  # an attempt of this very call was applied (a retry after a lost answer)
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise VersionConflict(
                        f"{change.incident_id} is not at version {change.expected_version}"
                    ) from None
                if (
                    change.expected_version == 0
                    and change.incident.dedup_key
                    and len(reasons) > 1
                    and reasons[1] == "ConditionalCheckFailed"
                ):
                    raise DedupTaken(self.dedup_holder(change.incident.dedup_key)) from None
                if "ConditionalCheckFailed" in reasons or not reasons:
                    # Something other than the version moved (a proposal or dedup key changed under a
                    # version we read): plan again from a fresh read.
                    raise VersionConflict(
                        f"{change.incident_id}: {', '.join(reasons) or 'cancelled'}"
                    ) from None
                if attempt == TRANSACTION_RETRIES:
                    raise StoreError("TransactionConflict", "DynamoDB kept cancelling the write") from None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter
            except Exception as exc:
                raise _failure(exc, f"DynamoDB table {self.table}") from None

    def _applied(self, change: Change) -> bool:
        """Whether the audit entry of the change's version is this change's own (``changeId``).

        botocore retries a transaction whose answer was lost (a timeout); DynamoDB makes the retry
        idempotent through the call's ClientRequestToken, but an emulator may not, and the retry
        then fails on the version the first attempt moved: a refusal of a change that was made."""
        try:
            item = self.dynamodb.get_item(
                TableName=self.table,
                Key=to_item({"pk": partition(change.incident_id), "sk": audit_sort_key(change.version)}),
                ConsistentRead=True,
                ProjectionExpression="changeId",
            ).get("Item")
        except Exception as exc:
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        return bool(item) and from_item(item).get("changeId") == change.event.get("changeId")

    def note_detection(self, incident_id: str, now: datetime) -> bool:
        """Count a repeated detection on an active incident (no new version: a counter, not a
        change of state). False when the incident is no longer active."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=to_item(head_key(incident_id)),
                UpdateExpression="ADD detections :one SET lastDetectedAt = :now",
                ConditionExpression="#status IN (:open, :acknowledged)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":now": {"S": precise_time(now)},
                    ":open": {"S": "open"},
                    ":acknowledged": {"S": "acknowledged"},
                },
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        except Exception as exc:
            raise _failure(exc, f"DynamoDB table {self.table}") from None
        return True

    def mark_signalled(self, incident_id: str, proposal_id: str, state: str) -> None:
        """The state machine has heard of the proposal's ``state``: take it off the sweeper's list
        (not a change of the incident, so no new version)."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=to_item({"pk": partition(incident_id), "sk": f"P#{proposal_id}"}),
                UpdateExpression="REMOVE #status",
                ConditionExpression="#state = :state",
                ExpressionAttributeNames={"#status": "status", "#state": "state"},
                ExpressionAttributeValues={":state": {"S": state}},
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _failure(exc, f"DynamoDB table {self.table}") from None

    # -- publishing ------------------------------------------------------------------------------
    def flush(self, incident_id: str, known: Mapping[int, Mapping[str, Any]] | None = None) -> int:
        """Publish the incident's unpublished events in version order; the number published.

        ``known`` holds events the caller just committed, so the common case (only the caller's
        own event is pending) needs no read of the audit trail."""
        published = 0
        outbox_key = to_item({"pk": partition(incident_id), "sk": OUTBOX_SORT_KEY})
        for _ in range(3):  # a newer change may land while publishing: publish it too
            try:
                item = self.dynamodb.get_item(TableName=self.table, Key=outbox_key, ConsistentRead=True).get(
                    "Item"
                )
            except Exception as exc:
                raise _failure(exc, f"DynamoDB table {self.table}") from None
            outbox = from_item(item) if item else {}
            up_to, done = int(outbox.get("upTo") or 0), int(outbox.get("publishedUpTo") or 0)
            if done >= up_to:
                return published
            events = self._pending_events(incident_id, done + 1, up_to, known or {})
            sequence: str | None = None
            for event in events:
                params: dict[str, Any] = {
                    "StreamName": self.stream,
                    "Data": json.dumps(jsonable(_plain(event)), sort_keys=True).encode(),
                    "PartitionKey": incident_id,
                }
                if sequence is not None:
                    params["SequenceNumberForOrdering"] = sequence
                try:
                    sequence = str(self.kinesis.put_record(**params)["SequenceNumber"])
                except Exception as exc:
                    raise _failure(exc, f"Kinesis stream {self.stream}") from None
                published += 1
            self._advance(outbox_key, up_to)
        return published

    def _pending_events(
        self, incident_id: str, first: int, last: int, known: Mapping[int, Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        if all(v in known for v in range(first, last + 1)):
            return [known[v] for v in range(first, last + 1)]
        items = self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": {"S": partition(incident_id)},
                ":low": {"S": audit_sort_key(first)},
                ":high": {"S": audit_sort_key(last)},
            },
            ConsistentRead=True,
        )
        return [event_of(i) for i in items]

    def _advance(self, outbox_key: dict[str, Any], up_to: int) -> None:
        """``publishedUpTo`` to ``up_to``; off the sweeper's list when nothing newer is pending."""
        values = {":v": {"N": str(up_to)}}
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=outbox_key,
                UpdateExpression="SET publishedUpTo = :v REMOVE #status",
                ConditionExpression="upTo = :v AND publishedUpTo < :v",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
            return
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _failure(exc, f"DynamoDB table {self.table}") from None
        try:  # a newer change is pending (or someone else got further): record progress only
            self.dynamodb.update_item(
                TableName=self.table,
                Key=outbox_key,
                UpdateExpression="SET publishedUpTo = :v",
                ConditionExpression="publishedUpTo < :v",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _failure(exc, f"DynamoDB table {self.table}") from None


def event_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The audit entry (and stream record) of an audit item."""
    return {k: jsonable(v) for k, v in item.items() if k not in ("pk", "sk", "type")}
