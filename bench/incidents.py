"""Opening and transitioning incidents through the operator's API, next to the floor of the same writes.

    python -m bench.incidents [--count 100] [--rounds 3]

Starts a control plane, moto (server mode) and the operator, with one IncidentPolicy and a
responder. Each round, in the same run and alternating:

- **ours**: ``--count`` times ``POST /v1/incidents`` (a new incident: the dedup key's item, the
  incident, its audit entry and outbox in one transaction, then one PutRecord and the outbox's
  update), then ``--count`` times ``POST /v1/incidents/{id}/acknowledge`` (a consistent read of the
  incident, the conditional transaction, PutRecord, outbox update), each over HTTP with an API key;
- **floor**: the same DynamoDB and Kinesis writes with a bare boto3 client: the very
  ``TransactWriteItems`` payloads (built before the clock starts), ``PutRecord``, and the outbox's
  ``UpdateItem``; no HTTP, no authentication, no read, no planning.

Times are per call (p50, p95) in milliseconds; the ratio is ours / floor at the median, medians
over the rounds. Both sides talk to the same moto on loopback, whose own time dominates the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.http import call
from tests.support.isolated import isolated_plane
from tests.support.kube import wait_for_condition
from tests.support.policies import STORAGE_SERVICES, client_key, policy, setup_connection

from incident_commander.incidents import model
from incident_commander.incidents.model import Actor
from incident_commander.incidents.store import IncidentStore, _plain, jsonable

NS = "bench"
GENEROUS = {"rateLimit": {"requestsPerMinute": 100000, "burst": 10000}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Ours:
    """The operator's API with one client's API key."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"ApiKey {key}"}

    def open(self, i: int) -> tuple[float, str]:
        body = {"title": f"bench {i}", "severity": "high", "dedupKey": uuid.uuid4().hex}
        started = time.perf_counter()
        answer = call(self.url, "POST", "/v1/incidents", json_body=body, headers=self.headers, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status == 201, answer.body
        return elapsed, str(answer.json()["incident"]["id"])

    def acknowledge(self, incident_id: str) -> float:
        started = time.perf_counter()
        answer = call(
            self.url, "POST", f"/v1/incidents/{incident_id}/acknowledge", headers=self.headers, timeout=60
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status == 200, answer.body
        return elapsed


class Floor:
    """The same writes with a bare client: payloads built before the clock starts."""

    def __init__(self, store: IncidentStore) -> None:
        self.store = store
        self.actor = Actor(client="agent", role="responder")

    def open(self, i: int) -> tuple[float, model.Change]:
        now = datetime.now(UTC)
        change = model.plan_open(
            incident_id=model.new_incident_id(now),
            title=f"floor {i}",
            severity="high",
            actor=self.actor,
            now=now,
            dedup_key=uuid.uuid4().hex,
        )
        return self.write(change), change

    def acknowledge(self, opened: model.Change) -> float:
        return self.write(model.plan_acknowledge(opened.incident, self.actor, datetime.now(UTC)))

    def write(self, change: model.Change) -> float:
        store = self.store
        items = store.transaction(change)
        data = json.dumps(jsonable(_plain(change.event)), sort_keys=True).encode()
        started = time.perf_counter()
        store.dynamodb.transact_write_items(TransactItems=items)
        store.kinesis.put_record(StreamName=store.stream, Data=data, PartitionKey=change.incident_id)
        store.dynamodb.update_item(
            TableName=store.table,
            Key={"pk": {"S": f"I#{change.incident_id}"}, "sk": {"S": "O"}},
            UpdateExpression="SET publishedUpTo = :v REMOVE #status",
            ConditionExpression="upTo = :v AND publishedUpTo < :v",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":v": {"N": str(change.version)}},
        )
        return (time.perf_counter() - started) * 1000


def one_round(ours: Ours, floor: Floor, count: int) -> dict[str, list[float]]:
    """Interleaved call by call, so both sides write into a table of the same size (moto copies the
    whole table in every transaction: its cost grows with the table, for both sides alike)."""
    times: dict[str, list[float]] = {"open": [], "ack": [], "floor_open": [], "floor_ack": []}
    pairs = []
    for i in range(count):
        elapsed, incident_id = ours.open(i)
        times["open"].append(elapsed)
        floor_elapsed, change = floor.open(i)
        times["floor_open"].append(floor_elapsed)
        pairs.append((incident_id, change))
    for incident_id, change in pairs:
        times["ack"].append(ours.acknowledge(incident_id))
        times["floor_ack"].append(floor.acknowledge(change))
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 0.5), 2), "p95": round(percentile(values, 0.95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50, help="incidents per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-incidents-"))
    # Single-threaded, as in the tests: moto's threaded server does not apply concurrent writes (the
    # operator's sweep runs beside the bench's calls) atomically, real DynamoDB does.
    moto = MotoServer.start(log_dir, serial=True)
    try:
        with isolated_plane(NS) as kube:
            operator = OperatorProcess.start(kube, log_dir)
            try:
                setup_connection(kube, NS, moto, services=STORAGE_SERVICES, logs=operator.logs)
                rounds: dict[str, list[dict[str, float]]] = {}
                for index in range(args.rounds + 1):  # round 0 warms both sides up and is not counted
                    name = f"bench-{index}"  # a fresh table each round
                    kube.apply(policy(name, NS, [{"name": "agent", "role": "responder"}], auth=GENEROUS), NS)
                    wait_for_condition(kube, "incidentpolicy", NS, name, timeout=120, logs=operator.logs)
                    key = client_key(kube, NS, name, "agent")["apiKey"]
                    deadline = time.monotonic() + 60
                    headers = {"Authorization": f"ApiKey {key}"}
                    while (
                        call(operator.api_url, "GET", "/v1/incidents?limit=1", headers=headers).status != 200
                    ):
                        assert time.monotonic() < deadline, operator.logs()
                        time.sleep(0.3)
                    names = policy(name, NS, [])["spec"]["storage"]
                    store = IncidentStore(
                        dynamodb=moto_client(moto.url, "dynamodb"),
                        kinesis=moto_client(moto.url, "kinesis"),
                        table=names["incidentTable"],
                        stream=names["eventStream"],
                    )
                    times = one_round(
                        Ours(operator.api_url, key), Floor(store), 10 if index == 0 else args.count
                    )
                    if index:
                        for kind, values in times.items():
                            rounds.setdefault(kind, []).append(summary(values))
            finally:
                operator.stop()
    finally:
        moto.stop()
    result: dict[str, Any] = {
        name: {q: statistics.median(r[q] for r in values) for q in ("p50", "p95")}
        for name, values in rounds.items()
    }
    result["ratio_open"] = round(result["open"]["p50"] / result["floor_open"]["p50"], 2)
    result["ratio_ack"] = round(result["ack"]["p50"] / result["floor_ack"]["p50"], 2)
    result["overhead_ms_open"] = round(result["open"]["p50"] - result["floor_open"]["p50"], 2)
    result["overhead_ms_ack"] = round(result["ack"]["p50"] - result["floor_ack"]["p50"], 2)
    result["load_average"] = os.getloadavg()
    result["count"], result["rounds"] = args.count, args.rounds
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
