"""Reading an incident's three records the way an auditor would: the table, the audit trail, the stream.

``agreement`` is the crash-safety property of docs/incidents.md: the incident's version is its last
audit entry, the audit trail is versions 1..n without a gap, and the stream, read with the consumer
rule (apply an event only when its version is above the last one applied), is exactly the audit trail,
in order, with nothing left in the outbox.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from typing import Any

from incident_commander.incidents.store import from_item, jsonable

SFN_CONFIG = {"stepfunctions": {"execute_state_machine": True}}


def enable_state_machine_executions(moto_url: str) -> None:
    """moto runs Step Functions executions (with task-token callbacks) only when told to; state
    machines created before this live in the other backend, so call it before any is created."""
    request = urllib.request.Request(  # noqa: S310 - loopback moto
        f"{moto_url}/moto-api/config",
        data=json.dumps(SFN_CONFIG).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback moto
        assert 200 <= answer.status < 300


def stream_records(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """Every record of the stream, each shard from its start, in shard order."""
    records: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            records += [json.loads(r["Data"]) for r in page["Records"]]
            if not page["Records"] or page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def query_all(dynamodb: Any, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = dynamodb.query(**params)
        items += [from_item(i) for i in page["Items"]]
        if not page.get("LastEvaluatedKey"):
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def audit_trail(dynamodb: Any, table: str, incident_id: str) -> list[dict[str, Any]]:
    items = query_all(
        dynamodb,
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :t)",
        ExpressionAttributeValues={":pk": {"S": f"I#{incident_id}"}, ":t": {"S": "T#"}},
        ConsistentRead=True,
    )
    return [{k: jsonable(v) for k, v in i.items() if k not in ("pk", "sk", "type")} for i in items]


def item(dynamodb: Any, table: str, pk: str, sk: str) -> dict[str, Any] | None:
    found = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    ).get("Item")
    return from_item(found) if found else None


def applied(records: Iterable[dict[str, Any]], incident_id: str) -> list[dict[str, Any]]:
    """The consumer rule: an incident's events in stream order, skipping any version not above the
    last one applied (a re-published duplicate)."""
    last = 0
    kept = []
    for record in records:
        if record.get("incidentId") != incident_id:
            continue
        if int(record["version"]) > last:
            kept.append(record)
            last = int(record["version"])
    return kept


def agreement(dynamodb: Any, kinesis: Any, table: str, stream: str, incident_ids: Iterable[str]) -> list[str]:
    """What disagrees between state, audit trail and stream, per incident (empty: they agree)."""
    problems: list[str] = []
    records = stream_records(kinesis, stream)
    for incident_id in incident_ids:
        head = item(dynamodb, table, f"I#{incident_id}", f"I#{incident_id}")
        trail = audit_trail(dynamodb, table, incident_id)
        if head is None:
            if trail:
                problems.append(f"{incident_id}: audit entries without the incident")
            continue
        version = int(head["version"])
        versions = [int(e["version"]) for e in trail]
        if versions != list(range(1, version + 1)):
            problems.append(f"{incident_id}: version {version} but audit versions {versions}")
        if trail and trail[-1]["to"] != head["status"]:
            problems.append(
                f"{incident_id}: status {head['status']} but the last entry says {trail[-1]['to']}"
            )
        stream = applied(records, incident_id)
        if stream != trail:
            problems.append(
                f"{incident_id}: stream {[(e['version'], e['action']) for e in stream]} "
                f"!= audit {[(e['version'], e['action']) for e in trail]}"
            )
        outbox = item(dynamodb, table, f"I#{incident_id}", "O") or {}
        if int(outbox.get("publishedUpTo", 0)) != version or outbox.get("status"):
            problems.append(f"{incident_id}: outbox {outbox} at version {version}")
    return problems
