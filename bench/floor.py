"""The same-work floor of bench/reconcile_scale.py: the least a controller could do for the objects.

    python -m bench.floor --kubeconfig PATH --namespace floor --count N --endpoint URL

Run by bench/reconcile_scale.py as a process of its own, so its CPU time and peak RSS are its own.
It watches the three kinds (one watch each, as any controller must to learn of new objects), and
once index *i*'s connection, budget and policy all exist it does, for that index, exactly the AWS
calls the operator must make, with one shared boto3 client per service (no per-connection
clients, no probes beyond the spec's, no retries):

- the connection's one listed service, STS ``GetCallerIdentity`` (it also tells the account the
  policy's storage names need);
- the budget's strongly consistent ledger read (``GetItem``), its Cost Explorer figure
  (``GetCostAndUsage``) and forecast (``GetCostForecast``, which moto refuses: one request all
  the same, as the operator's);
- the policy's storage through the operator's own ``provisioner.ensure_all`` (a DynamoDB table with
  its GSI and TTL, a Kinesis stream, an S3 bucket with versioning, encryption and a public access
  block, a Step Functions state machine), so the very same requests;

and the Kubernetes writes the issues require, once each: one status patch per object, and the
policy's credential Secrets as the operator's crash-safe issuance writes them (credentials/
issuer.py): the signing keys (sealed), the key index with the key pending (sealed), the client's
key, then the index again with the key active (sealed). Seals are the same HMAC
(credentials/integrity.py) under a key of the floor's own. What it leaves out, because no issue
asks for it: Events, the per-connection read of the credentials Secret (it reads it once),
conditions beyond Ready, metrics, retries.

When all ``count`` indices are done it prints one JSON line (its own CPU seconds, peak RSS, AWS
requests and Kubernetes writes made) and exits.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import kubernetes
from botocore.config import Config

from incident_commander.budget import calc, costexplorer, ledger
from incident_commander.budget.model import CostFilter
from incident_commander.credentials import api_keys, integrity, signing
from incident_commander.credentials.integrity import IntegrityKey, SealedFields
from incident_commander.credentials.issuer import (
    LABEL_CLIENT,
    LABEL_MANAGED_BY,
    LABEL_POLICY,
    LABEL_PURPOSE,
    LABEL_ROLE,
    MANAGED_BY,
    TYPE_API_KEY,
    TYPE_KEY_INDEX,
    TYPE_SIGNING,
    api_key_secret_name,
    index_secret_name,
    signing_secret_name,
)
from incident_commander.kinds.incidentpolicy.spec import parse_policy_spec
from incident_commander.storage import provisioner
from incident_commander.timestamps import precise_time

GROUP, VERSION = "incidentcommander.io", "v1alpha1"
PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}
SERVICES = ("sts", "dynamodb", "kinesis", "s3", "stepfunctions", "ce")
USER_AGENT = "incident-commander-floor"
THREADS = 16
"""As many passes at once as the operator runs connection passes."""


class Floor:
    """The floor's state: shared clients, the objects seen so far, counters of the work done."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, endpoint: str) -> None:
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        secret = self.core.read_namespaced_secret("aws-creds", namespace)  # once, not per connection
        keys = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        session = boto3.session.Session(
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        # No retries: the operator's clients retry only on throttling and 5xx, and its forecast
        # client not at all (moto refuses every forecast with a 500).
        once = Config(retries={"total_max_attempts": 1})
        self.clients = {s: session.client(s, endpoint_url=endpoint, config=once) for s in SERVICES}
        self.aws_requests: Counter[str] = Counter()
        for service, client in self.clients.items():
            client.meta.events.register("before-send", self._count(service))
        self.writes: Counter[str] = Counter()
        self.seal_key = IntegrityKey(integrity.generate_key())
        self._seen: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _count(self, service: str) -> Any:
        def count(**kwargs: Any) -> None:
            with self._lock:
                self.aws_requests[f"{service} {kwargs['event_name'].rsplit('.', 1)[-1]}"] += 1

        return count

    def client(self, service: str) -> Any:
        return self.clients[service]

    def seen(self, kind: str, body: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """Record an object; the index's three objects once all of them exist (only that once)."""
        index = body["metadata"]["name"].rsplit("-", 1)[1]
        with self._lock:
            objects = self._seen.setdefault(index, {})
            if kind in objects or objects.get("done"):
                return None
            objects[kind] = body
            if len(objects) < len(PLURALS):
                return None
            objects["done"] = {}
            return dict(objects)

    def status(self, kind: str, name: str, reason: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": "Ready",
            "status": "True",
            "reason": reason,
            "message": "done by the same-work floor",
            "lastTransitionTime": now,
            "observedGeneration": 1,
        }
        body = {"status": {"observedGeneration": 1, "conditions": [condition]}}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, body
        )
        self._wrote(f"patch {PLURALS[kind]}/status")

    def _wrote(self, what: str) -> None:
        with self._lock:
            self.writes[what] += 1

    def secret(
        self,
        policy: dict[str, Any],
        *,
        name: str,
        type_: str,
        labels: dict[str, str],
        data: dict[str, str],
        sealed: bool,
        resource_version: str | None = None,
    ) -> str:
        """Create (or replace at ``resource_version``) one Secret as the issuer writes it."""
        meta = policy["metadata"]
        annotations = None
        if sealed:
            fields = SealedFields(
                namespace=self.namespace,
                name=name,
                secret_type=type_,
                policy=meta["name"],
                policy_uid=meta["uid"],
                data=data,
            )
            annotations = {integrity.ANNOTATION: self.seal_key.seal(fields)}
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=name,
                namespace=self.namespace,
                labels=labels,
                annotations=annotations,
                resource_version=resource_version,
                owner_references=[
                    kubernetes.client.V1OwnerReference(
                        api_version=f"{GROUP}/{VERSION}",
                        kind="IncidentPolicy",
                        name=meta["name"],
                        uid=meta["uid"],
                        controller=True,
                        block_owner_deletion=False,
                    )
                ],
            ),
            type=type_,
            string_data=data,
        )
        if resource_version is None:
            stored = self.core.create_namespaced_secret(self.namespace, body)
            self._wrote("create secrets")
        else:
            stored = self.core.replace_namespaced_secret(name, self.namespace, body)
            self._wrote("update secrets")
        return str(stored.metadata.resource_version)

    def reconcile(self, objects: dict[str, dict[str, Any]]) -> None:
        """One index: connection, budget, policy, in that order (each needs the one before)."""
        now = datetime.now(UTC)
        conn = objects["AwsConnection"]["metadata"]["name"]
        budget = objects["BudgetPolicy"]
        policy = objects["IncidentPolicy"]
        # The AwsConnection: its one listed service, STS, which also tells the account.
        account = self.client("sts").get_caller_identity()["Account"]
        self.status("AwsConnection", conn, "Floor")
        # The BudgetPolicy: the ledger counter and one Cost Explorer round (figure and forecast).
        spec = budget["spec"]
        period = calc.period_bounds(spec["period"], now)
        query = calc.cost_query(CostFilter(services=tuple(spec["filter"]["services"])))
        ledger.read_counter(
            self.client("dynamodb"),
            namespace=self.namespace,
            budget=budget["metadata"]["name"],
            period_start=period[0],
        )
        costexplorer.period_to_date(
            self.client("ce"), query=query, period=spec["period"], start=period[0], now=now
        )
        costexplorer.forecast_remaining(
            self.client("ce"), query=query, period=spec["period"], end=period[1], now=now
        )
        self.status("BudgetPolicy", budget["metadata"]["name"], "Floor")
        # The IncidentPolicy: its storage (the operator's provisioner), then its credentials.
        name = policy["metadata"]["name"]
        policy_spec = parse_policy_spec(policy["spec"])
        names = policy_spec.storage_names(namespace=self.namespace, policy=name, account=account)
        provisioner.ensure_all(
            self.client, names, region="us-east-1", account=account, owner=f"{self.namespace}/{name}"
        )
        self.credentials(policy, policy_spec.algorithm, policy_spec.clients, policy_spec.token.ttl, now)
        self.status("IncidentPolicy", name, "Floor")

    def credentials(
        self,
        policy: dict[str, Any],
        algorithm: signing.Algorithm,
        clients: Iterable[api_keys.ClientSpec],
        ttl: Any,
        now: datetime,
    ) -> None:
        """The issuer's writes for a new policy: signing keys, then per client the key index with
        the key pending, the client's Secret, the index with the key active."""
        name = policy["metadata"]["name"]
        labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_POLICY: name}
        decision = signing.plan_signing_keys(
            (), algorithm=algorithm, token_ttl=ttl, rotate_request=None, rotate_handled=None, now=now
        )
        keys = decision.keys or ()
        self.secret(
            policy,
            name=signing_secret_name(name),
            type_=TYPE_SIGNING,
            labels={**labels, LABEL_PURPOSE: "jwt-signing-keys"},
            data={
                "signing-keys.json": json.dumps({"rotateHandled": None, "keys": [k.to_json() for k in keys]}),
                "jwks.json": json.dumps(signing.jwks(keys)),
            },
            sealed=True,
        )
        index = api_keys.KeyIndex()
        version: str | None = None
        for client in clients:
            issued = api_keys.generate_key()
            index = api_keys.with_pending(index, client, issued, now)
            version = self._index(policy, labels, index, version)
            self.secret(
                policy,
                name=api_key_secret_name(name, client.name),
                type_=TYPE_API_KEY,
                labels={
                    **labels,
                    LABEL_PURPOSE: "api-key",
                    LABEL_CLIENT: client.name,
                    LABEL_ROLE: client.role,
                },
                data={
                    "apiKey": issued.plaintext,
                    "keyId": issued.key_id,
                    "role": client.role,
                    "issuedAt": precise_time(now),
                    "expiresAt": precise_time(now + client.rotation_period),
                },
                sealed=False,
            )
            index = api_keys.with_activated(index, issued.key_id, client.grace_period, now)
            version = self._index(policy, labels, index, version)

    def _index(
        self, policy: dict[str, Any], labels: dict[str, str], index: api_keys.KeyIndex, version: str | None
    ) -> str:
        return self.secret(
            policy,
            name=index_secret_name(policy["metadata"]["name"]),
            type_=TYPE_KEY_INDEX,
            labels={**labels, LABEL_PURPOSE: "api-key-index"},
            data={"index.json": json.dumps(index.to_json())},
            sealed=True,
            resource_version=version,
        )


def run(
    kubeconfig: Path, namespace: str, count: int, endpoint: str, threads: int = THREADS
) -> dict[str, Any]:
    """Watch the three kinds in ``namespace`` until ``count`` indices are reconciled."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = threads * 2
    api = kubernetes.client.ApiClient(configuration)
    api.user_agent = USER_AGENT  # the audit log tells its writes from the bench's creates
    floor = Floor(api, namespace, endpoint)
    done = threading.Semaphore(0)
    failures: list[BaseException] = []
    pool = ThreadPoolExecutor(threads)

    def reconcile(objects: dict[str, dict[str, Any]]) -> None:
        try:
            floor.reconcile(objects)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            done.release()

    def watch(kind: str) -> None:
        custom = kubernetes.client.CustomObjectsApi(api)
        for event in kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURALS[kind]
        ):
            if event["type"] == "ADDED":
                objects = floor.seen(kind, event["object"])
                if objects is not None:
                    pool.submit(reconcile, objects)

    for kind in PLURALS:
        threading.Thread(target=watch, args=(kind,), daemon=True, name=f"watch {kind}").start()
    print(json.dumps({"watching": namespace}), flush=True)
    for _ in range(count):
        done.acquire()
    pool.shutdown()
    if failures:
        raise RuntimeError(f"{len(failures)} floor passes failed, the first: {failures[0]!r}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "aws_requests": dict(floor.aws_requests),
        "aws_requests_total": sum(floor.aws_requests.values()),
        "writes": dict(floor.writes),
        "writes_total": sum(floor.writes.values()),
    }


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--endpoint", required=True, help="the AWS endpoint (moto)")
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    result = run(args.kubeconfig, args.namespace, args.count, args.endpoint, args.threads)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
