"""Incidents through the operator's API on the real stack: a control plane of its own, the operator
process, and moto (single-threaded, so DynamoDB's conditional writes are atomic as in AWS) executing
the consensus state machine with its task-token callbacks, behind a fault proxy the crash tests use.

Covers the lifecycle, bad input and illegal transitions, roles and scope, dedup and sampling,
listing, artifacts through presigned URLs, proposals approved by a quorum of distinct agents through
Step Functions executions (and refused, and timed out), two agents racing on one incident, the
budget's Halt, metrics and the summary's MTTR, and SIGKILLs during transitions after which state,
audit trail and stream still agree.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from incident_commander.storage.provisioner import OWNER_TAG, consensus_definition
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.faultproxy import FaultProxy
from tests.support.http import Answer, call
from tests.support.incidents import (
    agreement,
    applied,
    audit_trail,
    enable_state_machine_executions,
    item,
    stream_records,
)
from tests.support.isolated import isolated_plane
from tests.support.kube import Kube, condition, wait_for, wait_for_condition
from tests.support.policies import STORAGE_SERVICES, apply_connection, client_key, policy

pytestmark = pytest.mark.integration

NS = "inc"
AGENTS = ("agent-a", "agent-b", "agent-c")
CLIENTS = [
    *({"name": name, "role": "responder"} for name in AGENTS),
    {"name": "viewer", "role": "viewer"},
    {"name": "admin", "role": "admin"},
]
GENEROUS = {"rateLimit": {"requestsPerMinute": 100000, "burst": 10000}}
OPERATOR_ARGS = ("--all-namespaces", "--incident-sweep-interval=1s")
OLD_STUB = {
    "Comment": "incident-commander consensus workflow: independent model verdicts, then a quorum vote.",
    "StartAt": "CollectVerdicts",
    "States": {"CollectVerdicts": {"Type": "Pass", "End": True}},
}


@dataclass
class World:
    kube: Kube
    moto: MotoServer
    proxy: FaultProxy
    log_dir: Path
    operator: OperatorProcess
    keys: dict[str, str] = field(default_factory=dict)
    """``<policy>/<client>`` -> API key."""

    def call(
        self,
        who: str,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        auth = {"Authorization": f"ApiKey {self.keys[who]}"} if who else {}
        return call(
            self.operator.api_url,
            method,
            path,
            json_body=body,
            headers={**auth, **(headers or {})},
            timeout=timeout,
        )

    def aws(self, service: str) -> Any:
        return moto_client(self.moto.url, service)

    def kill(self) -> None:
        assert self.operator.process.stop(sig=9) == -9

    def start(self) -> None:
        self.operator = OperatorProcess.start(self.kube, self.log_dir, extra_args=OPERATOR_ARGS)
        wait_served(self, "alpha/agent-a")


def names(policy_name: str) -> dict[str, str]:
    return policy(policy_name, NS, [])["spec"]["storage"]  # type: ignore[no-any-return]


def wait_served(world: World, who: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if world.call(who, "GET", "/v1/incidents?limit=1", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the API never served {who}:\n{world.operator.logs()}")


def add_policy(world: World, name: str, clients: list[dict[str, str]], **spec: Any) -> None:
    world.kube.apply(policy(name, NS, clients, auth=GENEROUS, **spec), NS)
    wait_for_condition(world.kube, "incidentpolicy", NS, name, timeout=120, logs=world.operator.logs)
    for client in clients:
        world.keys[f"{name}/{client['name']}"] = client_key(world.kube, NS, name, client["name"])["apiKey"]
    wait_served(world, f"{name}/{clients[0]['name']}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    log_dir = tmp_path_factory.mktemp("incidents")
    port = free_port()
    # The executions' own DynamoDB calls go to MOTO_PORT: the same single-threaded server.
    moto = MotoServer.start(log_dir, port=port, serial=True, name="moto-serial", env={"MOTO_PORT": str(port)})
    proxy = FaultProxy(upstream=moto.url, port=free_port())
    proxy.start()
    try:
        enable_state_machine_executions(moto.url)
        with isolated_plane(NS) as kube:
            operator = OperatorProcess.start(kube, log_dir, extra_args=OPERATOR_ARGS)
            world = World(kube=kube, moto=moto, proxy=proxy, log_dir=log_dir, operator=operator)
            try:
                apply_connection(kube, NS, proxy.url, services=STORAGE_SERVICES)
                wait_for_condition(kube, "awsconnection", NS, "conn", timeout=60, logs=operator.logs)
                add_policy(world, "alpha", CLIENTS)
                add_policy(world, "beta", [{"name": "agent-a", "role": "responder"}])
                add_policy(
                    world,
                    "sampled",
                    [{"name": "agent-a", "role": "responder"}],
                    sampling={"detectionRate": 0, "minDetectionRate": 0},
                )
                yield world
            finally:
                world.operator.stop()
    finally:
        proxy.stop()
        moto.stop()


def open_incident(world: World, who: str = "alpha/agent-a", **body: Any) -> dict[str, Any]:
    answer = world.call(
        who, "POST", "/v1/incidents", {"title": "checkout errors", "severity": "high", **body}
    )
    assert answer.status in (200, 201), answer.body
    return answer.json()  # type: ignore[no-any-return]


def opened_id(world: World, **body: Any) -> str:
    answer = open_incident(world, **body)
    assert answer["outcome"] == "opened", answer
    return str(answer["incident"]["id"])


def post(world: World, who: str, path: str, body: Any = None, if_match: int | None = None) -> Answer:
    headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
    return world.call(who, "POST", path, body, headers)


RESOLUTION = {"resolution": {"code": "fixed", "summary": "rolled back the deploy"}}


# -- storage: the consensus workflow ------------------------------------------------------------------


def test_a_policy_s_state_machine_is_the_shipped_workflow_and_an_old_one_is_updated_in_place(
    world: World,
) -> None:
    sfn = world.aws("stepfunctions")
    shipped = json.loads(consensus_definition())
    alpha = world.kube.get("incidentpolicy", NS, "alpha")
    arn = next(r["arn"] for r in alpha["status"]["storage"] if r["kind"] == "StateMachine")
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == shipped

    # Created by an earlier operator version (tagged as the policy's): updated in place, no drift.
    role = "arn:aws:iam::123456789012:role/incident-commander-consensus"
    legacy = sfn.create_state_machine(
        name=names("legacy")["stateMachine"],
        definition=json.dumps(OLD_STUB),
        roleArn=role,
        tags=[{"key": OWNER_TAG, "value": f"{NS}/legacy"}],
    )["stateMachineArn"]
    # Someone else's state machine under the name of a policy: adopted, never overwritten, drift.
    foreign = sfn.create_state_machine(
        name=names("foreign")["stateMachine"], definition=json.dumps(OLD_STUB), roleArn=role
    )["stateMachineArn"]
    for name in ("legacy", "foreign"):
        world.kube.apply(policy(name, NS, []), NS)
    obj = wait_for_condition(
        world.kube, "incidentpolicy", NS, "legacy", timeout=120, logs=world.operator.logs
    )
    entry = next(r for r in obj["status"]["storage"] if r["kind"] == "StateMachine")
    assert (entry["state"], entry["arn"]) == ("Created", legacy), entry
    assert condition(obj, "StorageReady")["reason"] == "Provisioned"  # type: ignore[index]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=legacy)["definition"]) == shipped

    obj = wait_for_condition(
        world.kube, "incidentpolicy", NS, "foreign", "StorageReady", timeout=120, logs=world.operator.logs
    )
    entry = next(r for r in obj["status"]["storage"] if r["kind"] == "StateMachine")
    assert entry["state"] == "Drifted" and "definition differs" in entry["message"], entry
    assert json.loads(sfn.describe_state_machine(stateMachineArn=foreign)["definition"]) == OLD_STUB


def test_observe_creates_changes_and_deletes_nothing_and_reports_presence_and_drift(world: World) -> None:
    sfn, dynamodb = world.aws("stepfunctions"), world.aws("dynamodb")
    refused = world.kube.kubectl(
        "apply",
        "-n",
        NS,
        "-f",
        "-",
        input=json.dumps(
            policy("watcher", NS, [], storage={"managementPolicy": "Observe", "deletionPolicy": "Delete"})
        ),
        check=False,
    )
    assert refused.returncode != 0 and "deletionPolicy must be Retain" in refused.stderr
    # Ours from an earlier version (tagged as the policy's) but Observe: reported, not updated.
    stub = sfn.create_state_machine(
        name=names("watcher")["stateMachine"],
        definition=json.dumps(OLD_STUB),
        roleArn="arn:aws:iam::123456789012:role/incident-commander-consensus",
        tags=[{"key": OWNER_TAG, "value": f"{NS}/watcher"}],
    )["stateMachineArn"]
    world.kube.apply(policy("watcher", NS, [], storage={"managementPolicy": "Observe"}), NS)
    obj = wait_for_condition(
        world.kube,
        "incidentpolicy",
        NS,
        "watcher",
        "StorageReady",
        status="False",
        timeout=120,
        logs=world.operator.logs,
    )
    states = {r["kind"]: r["state"] for r in obj["status"]["storage"]}
    assert states == {
        "DynamoDBTable": "Missing",
        "KinesisStream": "Missing",
        "S3Bucket": "Missing",
        "StateMachine": "Drifted",
    }
    assert condition(obj, "StorageReady")["reason"] == "ResourcesMissing"  # type: ignore[index]
    assert names("watcher")["incidentTable"] not in dynamodb.list_tables()["TableNames"]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=stub)["definition"]) == OLD_STUB
    # What appears out of band is reported as it is.
    dynamodb.create_table(
        TableName=names("watcher")["incidentTable"],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )

    def table_seen(found: dict[str, Any]) -> bool:
        entries = {r["kind"]: r for r in (found.get("status") or {}).get("storage") or []}
        return entries.get("DynamoDBTable", {}).get("state") == "Drifted"

    found = wait_for(
        world.kube, "incidentpolicy", NS, "watcher", table_seen, timeout=60, logs=world.operator.logs
    )
    table = next(r for r in found["status"]["storage"] if r["kind"] == "DynamoDBTable")
    assert "by-status" in table["message"] and "TTL" in table["message"]
    world.kube.kubectl("delete", "incidentpolicy", "watcher", "-n", NS, "--timeout=60s")
    assert names("watcher")["incidentTable"] in dynamodb.list_tables()["TableNames"]


# -- the lifecycle --------------------------------------------------------------------------------------


def test_open_acknowledge_resolve_close_with_etags_audit_trail_and_stream(world: World) -> None:
    answer = world.call(
        "alpha/agent-a",
        "POST",
        "/v1/incidents",
        {
            "title": "payments 5xx",
            "severity": "critical",
            "description": "error rate 12%",
            "source": "alertmanager",
            "labels": {"service": "payments"},
        },
    )
    assert answer.status == 201, answer.body
    incident = answer.json()["incident"]
    incident_id = incident["id"]
    assert answer.headers["location"] == f"/v1/incidents/{incident_id}"
    assert answer.headers["etag"] == '"1"'
    assert (incident["status"], incident["version"], incident["openedBy"]["client"]) == ("open", 1, "agent-a")
    assert incident["pendingEvents"] == 0

    read = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}")
    assert read.status == 200 and read.headers["etag"] == '"1"'
    assert read.json()["labels"] == {"service": "payments"}

    acked = post(world, "alpha/agent-b", f"/v1/incidents/{incident_id}/acknowledge", if_match=1)
    assert acked.status == 200, acked.body
    assert acked.headers["etag"] == '"2"' and acked.json()["acknowledgedBy"]["client"] == "agent-b"
    resolved = post(world, "alpha/agent-a", f"/v1/incidents/{incident_id}/resolve", RESOLUTION, if_match=2)
    assert resolved.status == 200, resolved.body
    assert resolved.json()["resolution"] == RESOLUTION["resolution"]
    closed = post(world, "alpha/admin", f"/v1/incidents/{incident_id}/close")
    assert closed.status == 200 and closed.json()["status"] == "closed", closed.body

    trail = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}/audit").json()["entries"]
    assert [(e["version"], e["action"], e["by"]["client"]) for e in trail] == [
        (1, "open", "agent-a"),
        (2, "acknowledge", "agent-b"),
        (3, "resolve", "agent-a"),
        (4, "close", "admin"),
    ]
    assert [e["to"] for e in trail] == ["open", "acknowledged", "resolved", "closed"]
    page = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}/audit?after=2&limit=1").json()
    assert [e["version"] for e in page["entries"]] == [3] and page["nextAfter"] == 3

    store = names("alpha")
    dynamodb, kinesis = world.aws("dynamodb"), world.aws("kinesis")
    assert agreement(dynamodb, kinesis, store["incidentTable"], store["eventStream"], [incident_id]) == []
    records = stream_records(kinesis, store["eventStream"])
    # Delivery is at least once: the sweep of a just-touched policy may publish an event the request
    # is publishing too. Every copy is the same record, and the consumer rule keeps one of each.
    events = [r for r in records if r["incidentId"] == incident_id]
    for record in events:
        assert record == next(r for r in events if r["eventId"] == record["eventId"]), record
    assert [r["eventId"] for r in applied(events, incident_id)] == [f"{incident_id}:{v}" for v in range(1, 5)]


def test_bad_input_and_illegal_transitions_get_a_clear_4xx(world: World) -> None:
    unknown = world.call("alpha/agent-a", "POST", "/v1/incidents", {"title": "x", "severity": "sev0"})
    assert unknown.status == 422 and unknown.json()["error"] == "UnknownSeverity"
    assert "critical, high, low" in unknown.json()["message"]
    for body, field_name in (
        ({"title": "x"}, "severity"),
        ({"title": "x", "severity": "high", "colour": "red"}, "colour"),
        ({"title": "", "severity": "high"}, "title"),
    ):
        answer = world.call("alpha/agent-a", "POST", "/v1/incidents", body)
        assert answer.status == 400 and field_name in answer.json()["message"], answer.body

    incident_id = opened_id(world)
    base = f"/v1/incidents/{incident_id}"
    assert post(world, "alpha/agent-a", f"{base}/acknowledge").status == 200
    again = post(world, "alpha/agent-b", f"{base}/acknowledge")
    assert again.status == 409 and again.json()["error"] == "AlreadyAcknowledged"
    stale = post(world, "alpha/agent-b", f"{base}/resolve", RESOLUTION, if_match=1)
    assert stale.status == 412 and stale.json()["error"] == "PreconditionFailed"
    weak = world.call("alpha/agent-b", "POST", f"{base}/resolve", RESOLUTION, {"If-Match": 'W/"2"'})
    assert weak.status == 400 and weak.json()["error"] == "InvalidIfMatch"
    bad_code = post(
        world, "alpha/agent-a", f"{base}/resolve", {"resolution": {"code": "magic", "summary": "x"}}
    )
    assert bad_code.status == 400 and "resolution.code" in bad_code.json()["message"]
    assert post(world, "alpha/agent-a", f"{base}/resolve", RESOLUTION).status == 200
    assert post(world, "alpha/agent-a", f"{base}/close").status == 200
    closed = post(world, "alpha/agent-a", f"{base}/resolve", RESOLUTION)
    assert closed.status == 409 and closed.json()["error"] == "IllegalTransition"
    assert "closed incident cannot be resolved" in closed.json()["message"]
    assert post(world, "alpha/agent-a", f"{base}/close").json()["error"] == "AlreadyClosed"
    attach = post(world, "alpha/agent-a", f"{base}/artifacts", {"name": "a.txt", "contentType": "text/plain"})
    assert attach.status == 409

    active = opened_id(world)
    no_resolution = post(world, "alpha/agent-a", f"/v1/incidents/{active}/close")
    assert no_resolution.status == 409 and no_resolution.json()["error"] == "ResolutionRequired"

    missing = world.call("alpha/viewer", "GET", "/v1/incidents/inc-0000000000000000000000")
    assert missing.status == 404
    assert world.call("alpha/viewer", "GET", "/v1/incidents/not-an-id").status == 404
    assert world.call("alpha/viewer", "GET", "/v1/incidents?cursor=garbage").status == 400
    assert world.call("alpha/viewer", "GET", "/v1/incidents?status=burning").status == 400
    assert world.call("alpha/viewer", "GET", "/v1/incidents?severity=sev0").status == 422


def test_roles_and_policy_scope(world: World) -> None:
    viewer = world.call("alpha/viewer", "POST", "/v1/incidents", {"title": "x", "severity": "high"})
    assert viewer.status == 403
    incident_id = opened_id(world)
    assert post(world, "alpha/viewer", f"/v1/incidents/{incident_id}/acknowledge").status == 403
    # Another policy's credential finds nothing, and cannot tell that the incident exists.
    other = world.call("beta/agent-a", "GET", f"/v1/incidents/{incident_id}")
    assert other.status == 404
    assert post(world, "beta/agent-a", f"/v1/incidents/{incident_id}/acknowledge").status == 404
    listed = world.call("beta/agent-a", "GET", "/v1/incidents").json()["incidents"]
    assert incident_id not in {i["id"] for i in listed}
    assert world.call("", "GET", "/v1/incidents").status == 401


def test_a_dedup_key_joins_detections_until_the_incident_is_resolved(world: World) -> None:
    key = f"disk-full-{uuid.uuid4().hex[:6]}"
    first = open_incident(world, dedupKey=key)
    again = open_incident(world, "alpha/agent-b", dedupKey=key)
    assert (first["outcome"], again["outcome"]) == ("opened", "deduplicated")
    assert again["incident"]["id"] == first["incident"]["id"] and again["incident"]["detections"] == 2
    incident_id = first["incident"]["id"]
    assert world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}").json()["detections"] == 2
    assert post(world, "alpha/agent-a", f"/v1/incidents/{incident_id}/resolve", RESOLUTION).status == 200
    after = open_incident(world, dedupKey=key)
    assert after["outcome"] == "opened" and after["incident"]["id"] != incident_id


def test_sampling_never_hides_the_most_severe_severity(world: World) -> None:
    for severity in ("high", "low"):
        answer = open_incident(world, "sampled/agent-a", severity=severity)
        assert (answer["outcome"], answer["incident"], answer["samplingRate"]) == ("sampled_out", None, 0)
    critical = open_incident(world, "sampled/agent-a", severity="critical")
    assert critical["outcome"] == "opened"


def test_listing_filters_and_pages_newest_first(world: World) -> None:
    made = []
    for i in range(5):
        made.append(opened_id(world, severity="low", title=f"noise {i}"))
    post(world, "alpha/agent-a", f"/v1/incidents/{made[1]}/acknowledge")
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/incidents?severity=low&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = world.call("alpha/viewer", "GET", query).json()
        assert len(page["incidents"]) <= 2
        assert {i["severity"] for i in page["incidents"]} <= {"low"}
        seen += [i["id"] for i in page["incidents"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    ours = [i for i in seen if i in made]
    assert ours == list(reversed(made)), "newest first, each once"
    assert len(seen) == len(set(seen))
    acked = world.call("alpha/viewer", "GET", "/v1/incidents?status=acknowledged&severity=low").json()
    assert made[1] in {i["id"] for i in acked["incidents"]}
    assert all(i["status"] == "acknowledged" for i in acked["incidents"])


def test_artifacts_go_to_the_policy_bucket_through_presigned_urls(world: World) -> None:
    incident_id = opened_id(world)
    answer = post(
        world,
        "alpha/agent-a",
        f"/v1/incidents/{incident_id}/artifacts",
        {"name": "heap.txt", "contentType": "text/plain"},
    )
    assert answer.status == 201, answer.body
    upload = answer.json()["upload"]
    artifact = answer.json()["artifact"]
    assert upload["method"] == "PUT" and "X-Amz-Signature" in upload["url"]
    put = urllib.request.Request(  # noqa: S310 - a presigned loopback URL
        upload["url"], data=b"heap dump", method="PUT", headers=upload["headers"]
    )
    with urllib.request.urlopen(put, timeout=10) as done:  # noqa: S310 - loopback moto
        assert done.status == 200
    bucket = names("alpha")["artifactBucket"]
    stored = world.aws("s3").get_object(Bucket=bucket, Key=artifact["key"])
    assert stored["Body"].read() == b"heap dump" and stored["ContentType"] == "text/plain"
    got = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}/artifacts/{artifact['id']}")
    assert got.status == 200, got.body
    with urllib.request.urlopen(got.json()["download"]["url"], timeout=10) as download:  # noqa: S310
        assert download.read() == b"heap dump"
    listed = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}").json()["artifacts"]
    assert [a["id"] for a in listed] == [artifact["id"]]
    tampered = got.json()["download"]["url"].replace(artifact["id"], "art-0000000000000000")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(tampered, timeout=10)  # noqa: S310


# -- remediation proposals and the consensus workflow ----------------------------------------------------


def propose(
    world: World, incident_id: str, who: str = "alpha/agent-a", timeout: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"action": {"kind": "rollback", "to": "v41"}, "description": "roll back"}
    if timeout is not None:
        body["timeoutSeconds"] = timeout
    answer = post(world, who, f"/v1/incidents/{incident_id}/proposals", body)
    assert answer.status == 201, answer.body
    return answer.json()["proposal"]  # type: ignore[no-any-return]


def execution(world: World, policy_name: str, proposal_id: str) -> dict[str, Any]:
    machine = names(policy_name)["stateMachine"]
    arn = f"arn:aws:states:us-east-1:123456789012:execution:{machine}:{proposal_id}"
    return world.aws("stepfunctions").describe_execution(executionArn=arn)  # type: ignore[no-any-return]


def wait_state(
    world: World, incident_id: str, proposal_id: str, state: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}/proposals/{proposal_id}")
        assert found.status == 200, found.body
        proposal = found.json()["proposal"]
        if proposal["state"] == state or time.monotonic() > deadline:
            assert proposal["state"] == state, proposal
            return proposal  # type: ignore[no-any-return]
        time.sleep(0.3)


def test_a_critical_proposal_needs_two_distinct_approvers_and_the_workflow_decides(world: World) -> None:
    incident_id = opened_id(world, severity="critical")
    proposal = propose(world, incident_id)
    assert (proposal["mode"], proposal["quorum"], proposal["state"]) == ("quorum", 2, "Pending")
    base = f"/v1/incidents/{incident_id}/proposals/{proposal['id']}"
    own = post(world, "alpha/agent-a", f"{base}/approve")
    assert own.status == 409 and own.json()["error"] == "SelfApproval"
    first = post(world, "alpha/agent-b", f"{base}/approve")
    assert first.status == 200 and first.json()["proposal"]["state"] == "Pending", first.body
    twice = post(world, "alpha/agent-b", f"{base}/approve")
    assert twice.status == 409 and twice.json()["error"] == "AlreadyApproved"
    assert execution(world, "alpha", proposal["id"])["status"] == "RUNNING"
    second = post(world, "alpha/agent-c", f"{base}/approve")
    assert second.status == 200, second.body
    decided = second.json()["proposal"]
    assert decided["state"] == "Approved" and decided["decidedBy"]["client"] == "consensus", decided
    assert [a["by"]["client"] for a in decided["approvals"]] == ["agent-b", "agent-c"]
    done = execution(world, "alpha", proposal["id"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"])["distinct"] == 2
    late = post(world, "alpha/admin", f"{base}/approve")
    assert late.status == 409 and late.json()["error"] == "ProposalApproved"
    actions = [
        e["action"]
        for e in world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}/audit").json()["entries"]
    ]
    assert actions == ["open", "propose", "approve", "approve", "decide"]


def test_high_needs_one_approver_and_low_remediates_at_once(world: World) -> None:
    high = opened_id(world, severity="high")
    proposal = propose(world, high)
    approved = post(world, "alpha/agent-b", f"/v1/incidents/{high}/proposals/{proposal['id']}/approve")
    assert approved.json()["proposal"]["state"] == "Approved", approved.body
    low = opened_id(world, severity="low")
    auto = propose(world, low)
    assert (auto["mode"], auto["state"], auto["decidedBy"]["client"]) == (
        "autoRemediate",
        "Approved",
        "policy",
    )
    with pytest.raises(Exception, match="ExecutionDoesNotExist"):
        execution(world, "alpha", auto["id"])


def test_refusal_and_timeout_paths_of_the_workflow(world: World) -> None:
    incident_id = opened_id(world, severity="critical")
    proposal = propose(world, incident_id)
    base = f"/v1/incidents/{incident_id}/proposals/{proposal['id']}"
    assert post(world, "alpha/agent-b", f"{base}/approve").status == 200
    refused = post(world, "alpha/agent-c", f"{base}/refuse", {"reason": "rollback loses orders"})
    assert refused.status == 200, refused.body
    assert refused.json()["proposal"]["state"] == "Refused"
    assert refused.json()["proposal"]["reason"] == "rollback loses orders"
    failed = execution(world, "alpha", proposal["id"])
    assert (failed["status"], failed["error"]) == ("FAILED", "Refused")
    assert post(world, "alpha/agent-a", f"{base}/approve").json()["error"] == "ProposalRefused"

    slow = propose(world, incident_id, timeout=2)
    time.sleep(3)
    expired = wait_state(world, incident_id, slow["id"], "Expired")
    assert expired["decidedBy"]["client"] == "consensus"
    timed_out = execution(world, "alpha", slow["id"])
    assert (timed_out["status"], timed_out["error"]) == ("FAILED", "Expired")
    late = post(world, "alpha/agent-b", f"/v1/incidents/{incident_id}/proposals/{slow['id']}/approve")
    assert late.status == 409 and late.json()["error"] == "ProposalExpired"


# -- two agents racing on one incident ------------------------------------------------------------------


def race(*calls: Callable[[], Answer]) -> list[Answer]:
    barrier = threading.Barrier(len(calls))

    def go(fn: Callable[[], Answer]) -> Answer:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def test_two_agents_racing_lose_no_update(world: World) -> None:
    for _ in range(8):
        incident_id = opened_id(world)
        path = f"/v1/incidents/{incident_id}/acknowledge"
        answers = race(
            functools.partial(post, world, "alpha/agent-a", path),
            functools.partial(post, world, "alpha/agent-b", path),
        )
        assert sorted(a.status for a in answers) == [200, 409], [a.body for a in answers]
        winner = next(a for a in answers if a.status == 200).json()["acknowledgedBy"]["client"]
        read = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}").json()
        assert read["acknowledgedBy"]["client"] == winner

        # Both read version 2 and send it: one change wins, the other is told the incident moved on.
        artifacts = f"/v1/incidents/{incident_id}/artifacts"
        answers = race(
            functools.partial(post, world, "alpha/agent-a", artifacts, text_file("a.txt"), if_match=2),
            functools.partial(post, world, "alpha/agent-b", artifacts, text_file("b.txt"), if_match=2),
        )
        assert sorted(a.status for a in answers) == [201, 412], [a.body for a in answers]
        # Without If-Match both changes land, one after the other.
        answers = race(
            functools.partial(post, world, "alpha/agent-a", artifacts, text_file("c.txt")),
            functools.partial(post, world, "alpha/agent-b", artifacts, text_file("d.txt")),
        )
        assert [a.status for a in answers] == [201, 201], [a.body for a in answers]
        incident = world.call("alpha/viewer", "GET", f"/v1/incidents/{incident_id}").json()
        assert sorted(a["name"] for a in incident["artifacts"])[-2:] == ["c.txt", "d.txt"]
        assert incident["version"] == 5


def text_file(name: str) -> dict[str, str]:
    return {"name": name, "contentType": "text/plain"}


def test_racing_detections_open_one_incident_and_racing_approvals_reach_one_decision(world: World) -> None:
    for _ in range(5):
        key = f"race-{uuid.uuid4().hex[:8]}"
        body = {"title": "cpu", "severity": "high", "dedupKey": key}
        answers = race(
            functools.partial(world.call, "alpha/agent-a", "POST", "/v1/incidents", body),
            functools.partial(world.call, "alpha/agent-b", "POST", "/v1/incidents", body),
        )
        assert sorted(a.status for a in answers) == [200, 201], [a.body for a in answers]
        assert len({a.json()["incident"]["id"] for a in answers}) == 1

    incident_id = opened_id(world, severity="critical")
    proposal = propose(world, incident_id)
    base = f"/v1/incidents/{incident_id}/proposals/{proposal['id']}"
    answers = race(
        lambda: post(world, "alpha/agent-b", f"{base}/approve"),
        lambda: post(world, "alpha/agent-c", f"{base}/approve"),
    )
    assert [a.status for a in answers] == [200, 200], [a.body for a in answers]
    final = wait_state(world, incident_id, proposal["id"], "Approved")
    assert sorted(a["by"]["client"] for a in final["approvals"]) == ["agent-b", "agent-c"]

    # A refusal racing the quorum-reaching approval: exactly one of them is written.
    proposal = propose(world, incident_id)
    base = f"/v1/incidents/{incident_id}/proposals/{proposal['id']}"
    assert post(world, "alpha/agent-b", f"{base}/approve").status == 200
    answers = race(
        lambda: post(world, "alpha/agent-c", f"{base}/approve"),
        lambda: post(world, "alpha/admin", f"{base}/refuse", {"reason": "no"}),
    )
    assert sorted(a.status for a in answers) == [200, 409], [a.body for a in answers]
    state = "Approved" if answers[0].status == 200 else "Refused"
    wait_state(world, incident_id, proposal["id"], state)
    status = execution(world, "alpha", proposal["id"])["status"]
    assert status == ("SUCCEEDED" if state == "Approved" else "FAILED")


# -- metrics and the summary --------------------------------------------------------------------------


def metric(world: World, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(world.operator.metrics_url, timeout=10) as answer:  # noqa: S310
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_mtta_mttr_open_gauge_and_summary(world: World) -> None:
    before = (
        metric(
            world,
            "incident_commander_incident_time_to_resolve_seconds_count",
            namespace=NS,
            policy="alpha",
            severity="critical",
        )
        or 0
    )
    made = [opened_id(world, severity="critical") for _ in range(3)]
    for incident_id in made:
        assert post(world, "alpha/agent-a", f"/v1/incidents/{incident_id}/acknowledge").status == 200
        assert post(world, "alpha/agent-a", f"/v1/incidents/{incident_id}/resolve", RESOLUTION).status == 200
    after = metric(
        world,
        "incident_commander_incident_time_to_resolve_seconds_count",
        namespace=NS,
        policy="alpha",
        severity="critical",
    )
    assert after == before + 3
    assert (
        metric(
            world,
            "incident_commander_incident_time_to_acknowledge_seconds_count",
            namespace=NS,
            policy="alpha",
            severity="critical",
        )
        or 0
    ) >= 3
    summary = world.call("alpha/viewer", "GET", "/v1/summary?window=1h").json()["incidents"]
    critical = summary["mttr"]["critical"]
    assert critical["count"] >= 3 and 0 <= critical["p50Seconds"] <= critical["p90Seconds"] < 3600
    assert summary["window"] == "1h" and set(summary["open"]) == {"critical", "high", "low"}
    assert world.call("alpha/viewer", "GET", "/v1/summary?window=forever").status == 400

    # The leader counts active incidents from the table (its sweep, 1 s after this replica wrote).
    still_open = opened_id(world, severity="critical")
    expected = world.call("alpha/viewer", "GET", "/v1/summary").json()["incidents"]["open"]["critical"]
    deadline = time.monotonic() + 30
    while (
        metric(world, "incident_commander_incidents_open", namespace=NS, policy="alpha", severity="critical")
        != expected
    ):
        assert time.monotonic() < deadline, "the open-incidents gauge did not follow the table"
        time.sleep(0.5)
    assert still_open


# -- the budget: Halt ---------------------------------------------------------------------------------


def test_under_a_budget_halt_only_the_most_severe_severity_opens(world: World) -> None:
    world.kube.apply(
        {
            "apiVersion": "incidentcommander.io/v1alpha1",
            "kind": "BudgetPolicy",
            "metadata": {"name": "tight"},
            "spec": {
                "connectionRef": {"name": "conn"},
                "period": "Monthly",
                "limit": {"amount": "1.00", "currency": "USD"},
                "thresholds": [{"percent": 100, "action": "Halt"}],
                "filter": {"services": ["Amazon Bedrock"]},
                "pricing": [{"model": "large", "inputPer1kTokens": "1.00", "outputPer1kTokens": "1.00"}],
            },
        },
        NS,
    )
    add_policy(world, "halted", [{"name": "agent-a", "role": "responder"}], budgetRef={"name": "tight"})
    used = world.call(
        "halted/agent-a",
        "POST",
        "/v1/usage",
        {"policy": "halted", "model": "large", "inputTokens": 5000, "outputTokens": 0},
    )
    assert used.status == 201, used.body
    deadline = time.monotonic() + 60
    route = {"policy": "halted", "taskType": "triage", "complexity": 0.2, "estimatedTokens": 10}
    while world.call("halted/agent-a", "POST", "/v1/route", route).status != 402:
        assert time.monotonic() < deadline, "the budget never halted"
        time.sleep(0.5)
    high = open_incident(world, "halted/agent-a", severity="high")
    assert high["outcome"] == "halted" and high["incident"] is None
    critical = open_incident(world, "halted/agent-a", severity="critical")
    assert critical["outcome"] == "opened"
    # Work on an incident costs no LLM: it goes on under the Halt.
    critical_id = critical["incident"]["id"]
    assert post(world, "halted/agent-a", f"/v1/incidents/{critical_id}/acknowledge").status == 200


# -- crashes ------------------------------------------------------------------------------------------


def test_sigkill_during_transitions_leaves_state_audit_and_stream_in_agreement(world: World) -> None:
    """SIGKILL the operator while a transition is in flight at each step of the write order: the
    DynamoDB transaction, the Kinesis publish, and the state machine's callback. The fault proxy
    holds that one call for 3 s and then forwards it, so the kill lands before the operator heard
    the answer and the write lands after the kill: the worst moment for each step. Each case is
    checked to have left its half-done state (committed but unpublished; published but not marked;
    approved by the workflow but Approving in the table) before a new operator starts; after it,
    the sweep finishes, and state, audit trail and stream agree."""
    store = names("alpha")
    table, stream = store["incidentTable"], store["eventStream"]
    dynamodb, kinesis = world.aws("dynamodb"), world.aws("kinesis")
    world.proxy.delay = 3.0

    def outbox(incident_id: str) -> tuple[int, int]:
        found = item(dynamodb, table, f"I#{incident_id}", "O") or {}
        return int(found.get("upTo", 0)), int(found.get("publishedUpTo", 0))

    committed_unpublished = []
    for _ in range(2):
        incident_id = opened_id(world)
        committed_unpublished.append(incident_id)
        crash_during(
            world,
            "dynamodb:TransactWriteItems",
            functools.partial(post, world, "alpha/agent-b", f"/v1/incidents/{incident_id}/acknowledge"),
            about=incident_id,
            after_kill=lambda i=incident_id: outbox(i) == (2, 1),
        )
    published_unmarked = []
    for _ in range(2):
        incident_id = opened_id(world)
        published_unmarked.append(incident_id)
        assert post(world, "alpha/agent-a", f"/v1/incidents/{incident_id}/acknowledge").status == 200
        crash_during(
            world,
            "kinesis:PutRecord",
            functools.partial(
                post, world, "alpha/agent-b", f"/v1/incidents/{incident_id}/resolve", RESOLUTION
            ),
            about=incident_id,
            after_kill=lambda i=incident_id: (
                outbox(i) == (3, 2) and any(r["eventId"] == f"{i}:3" for r in stream_records(kinesis, stream))
            ),
        )

    # The quorum-reaching approval, killed while it tells the state machine.
    incident_id = opened_id(world, severity="critical")
    proposal = propose(world, incident_id)
    base = f"/v1/incidents/{incident_id}/proposals/{proposal['id']}"
    assert post(world, "alpha/agent-b", f"{base}/approve").status == 200
    proposal_key = f"P#{proposal['id']}"
    crash_during(
        world,
        "states:SendTaskSuccess",
        functools.partial(post, world, "alpha/agent-c", f"{base}/approve"),
        after_kill=lambda: (
            (item(dynamodb, table, f"I#{incident_id}", proposal_key) or {}).get("state") == "Approving"
            and execution(world, "alpha", proposal["id"])["status"] == "SUCCEEDED"
        ),
    )

    touched = [*committed_unpublished, *published_unmarked, incident_id]
    deadline = time.monotonic() + 60
    while problems := agreement(dynamodb, kinesis, table, stream, touched):
        assert time.monotonic() < deadline, problems
        time.sleep(1)
    for incident_id in committed_unpublished:
        assert [e["action"] for e in audit_trail(dynamodb, table, incident_id)] == ["open", "acknowledge"]
    records = stream_records(kinesis, stream)
    for incident_id in published_unmarked:
        # Published before the kill and again after it, by the sweep or a reader of the incident
        # (they may race: delivery is at least once). Every copy is the same record, in version
        # order with the incident's others; the consumer rule keeps one.
        ours = [r for r in records if r["eventId"].startswith(f"{incident_id}:")]
        copies = [r for r in ours if r["eventId"] == f"{incident_id}:3"]
        assert len(copies) >= 2 and all(copy == copies[0] for copy in copies), copies
        versions = [r["version"] for r in ours]
        assert versions == sorted(versions) and set(versions) == {1, 2, 3}, versions
    # The sweep records the workflow's decision (each interval while the proposal is open).
    deadline = time.monotonic() + 30
    while (decided := [e["action"] for e in audit_trail(dynamodb, table, touched[-1])])[-1] != "decide":
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert decided == ["open", "propose", "approve", "approve", "decide"]
    assert wait_state(world, touched[-1], proposal["id"], "Approved")["decidedBy"]["client"] == "consensus"


def crash_during(
    world: World,
    operation: str,
    request: Callable[[], Answer],
    *,
    after_kill: Callable[[], bool],
    about: str = "",
) -> None:
    """Send ``request`` with ``operation`` held by the proxy, SIGKILL the operator while it waits,
    check (within 10 s, once the held call was forwarded) the half-done state ``after_kill`` expects,
    release the fault, start a new operator.

    The kill waits for the request's own call: one whose body names ``about``. The previous case's
    new operator may be sweeping, and its call for the previous incident is the same operation;
    killing on that one killed before this request's call was made (a CI run saw it)."""
    world.proxy.set_fault(operation, "slow")
    since = time.monotonic()
    sender = threading.Thread(target=_send, args=(request,))
    sender.start()
    deadline = time.monotonic() + 10
    while not world.proxy.attempts_for(operation, since, about.encode()):
        assert time.monotonic() < deadline, f"no {operation} call to kill during"
        time.sleep(0.02)
    time.sleep(0.2)
    world.kill()
    world.proxy.set_fault(operation, None)
    deadline = time.monotonic() + 10
    while not after_kill():
        assert time.monotonic() < deadline, f"the kill during {operation} did not leave the expected state"
        time.sleep(0.2)
    sender.join(timeout=15)
    world.start()


def _send(request: Callable[[], Answer]) -> None:
    with contextlib.suppress(OSError):  # the connection dies with the operator
        request()
