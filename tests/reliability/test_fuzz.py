"""Fuzzed specs of the three kinds against the real apiserver and the session's operator.

hypothesis generates specs that are mostly valid with wrong values mixed in (bad patterns, out of
range numbers, wrong types, unknown fields, broken cross-field rules). Each object is either
rejected at admission with a message naming the offending field (``spec.<path>``), or admitted and
then reconciled to a ``Ready`` condition with a reason for its current generation. Afterwards a
valid canary policy still becomes Ready (the operator keeps reconciling) and the operator's log
has no traceback. Endpoints are always loopback (moto, or a closed port): a fuzzed spec never
reaches real AWS. 30 examples per kind in CI, 300 with ``IC_RELIABILITY=long``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any, cast

import kubernetes
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.controlplane.localcluster import free_port
from tests.reliability.rig import LONG
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, condition, wait_for_condition
from tests.support.policies import apply_connection

pytestmark = pytest.mark.integration

GROUP, VERSION = "incidentcommander.io", "v1alpha1"
EXAMPLES = 300 if LONG else 30
FIELD = re.compile(r"\bspec(\.[A-Za-z]|\[|:)")
CLOSED_PORT = free_port()


def mutating(bad: bool) -> Any:
    """``maybe`` for one half of the examples: valid values only (``bad`` False), or valid values
    with wrong ones mixed in (``bad`` True). Cross-field rules can fail in both halves."""

    def pick(valid: st.SearchStrategy[Any], *invalid: Any) -> st.SearchStrategy[Any]:
        return maybe(valid, *invalid) if bad else valid

    return pick


def maybe(valid: st.SearchStrategy[Any], *invalid: Any) -> st.SearchStrategy[Any]:
    """Mostly a valid value; sometimes one of ``invalid`` or an arbitrary scalar of the wrong kind."""
    scalars = st.one_of(st.integers(-3, 3), st.text(max_size=6), st.booleans())
    wrong = st.one_of(st.sampled_from(invalid), scalars) if invalid else scalars
    return st.one_of(valid, valid, valid, wrong)


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


DNS = st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True)
SHORT = st.sampled_from(["100ms", "200ms", "1s", "2s"])
DURATION = st.sampled_from(["10s", "30s", "1m", "90s", "15m", "1h", "1h30m", "24h"])
BAD_DURATION = ["0s", "1x", "25h", "-1s", "", "1.s"]


def connection_specs(moto_url: str, bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    maybe = mutating(bad)
    endpoint = maybe(
        st.sampled_from([moto_url, f"http://127.0.0.1:{CLOSED_PORT}"]), "ftp://127.0.0.1/", "a url"
    )
    services = st.lists(
        st.sampled_from(
            [
                "sts",
                "s3",
                "dynamodb",
                "kinesis",
                "stepfunctions",
                "ce",
                "budgets",
                "bedrock",
                "inspector2",
                "ec2",
            ]
        ),
        max_size=5,
    )
    return st.fixed_dictionaries(
        {"endpointUrl": endpoint},
        optional={
            "region": maybe(st.sampled_from(["us-east-1", "eu-west-1", "us-gov-west-1"]), "us-east", "EU-1"),
            "services": services,
            "credentials": optional(
                secretRef=st.fixed_dictionaries(
                    {"name": maybe(st.sampled_from(["aws-creds", "absent"]), "Bad_Name")},
                    optional={"accessKeyIdKey": maybe(st.just("AWS_ACCESS_KEY_ID"), "bad key", "MISSING")},
                ),
                assumeRole=st.fixed_dictionaries(
                    {"roleArn": maybe(st.just("arn:aws:iam::123456789012:role/r"), "arn:aws:iam::1:role/x")},
                    optional={"durationSeconds": maybe(st.integers(900, 43200), 10, 50000)},
                ),
                # Both alternatives of assumeRole and of secretRef come up together now and then:
                # the CEL rules must refuse them naming spec.credentials.
                assumeRoleChain=maybe(
                    st.lists(
                        st.fixed_dictionaries(
                            {
                                "roleArn": maybe(
                                    st.sampled_from(
                                        [
                                            "arn:aws:iam::123456789012:role/a",
                                            "arn:aws:iam::123456789012:role/b",
                                        ]
                                    ),
                                    "role/x",
                                )
                            },
                            optional={
                                "externalId": maybe(st.just("ext-id"), "x"),
                                "sessionName": maybe(st.just("fuzz-hop"), "bad name"),
                            },
                        ),
                        min_size=1,
                        max_size=3,
                    ),
                    [],
                    [{"roleArn": "arn:aws:iam::123456789012:role/r"}] * 6,
                ),
                # Token files that are never inside an allowed directory: refused before reading.
                webIdentity=st.fixed_dictionaries(
                    {
                        "tokenFile": maybe(
                            st.sampled_from(["/var/run/secrets/absent/token", "/etc/hostname"]), "token"
                        ),
                        "roleArn": maybe(st.just("arn:aws:iam::123456789012:role/w"), "role/w"),
                    },
                    optional={"durationSeconds": maybe(st.integers(900, 43200), 10)},
                ),
            ),
            "retry": optional(
                mode=maybe(st.sampled_from(["standard", "adaptive"]), "legacy"),
                maxAttempts=maybe(st.integers(1, 3), 0, 11),
                baseDelay=maybe(SHORT, *BAD_DURATION),
                maxDelay=maybe(SHORT, *BAD_DURATION),
            ),
            "timeouts": optional(connect=maybe(SHORT, "10m", "1ms"), read=maybe(SHORT, "10m", "1ms")),
            "probeInterval": maybe(DURATION, "1s", *BAD_DURATION),
            **({"unexpected": st.just("field")} if bad else {}),
        },
    )


CE_SERVICES = st.sampled_from(["Amazon Bedrock", "Amazon DynamoDB", "AWS Lambda", ""])


def budget_specs(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    maybe = mutating(bad)
    amount = st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,2})?", fullmatch=True)
    thresholds = st.lists(
        st.fixed_dictionaries(
            {
                "percent": maybe(st.integers(1, 150), 0, 1001),
                "action": maybe(st.sampled_from(["Notify", "Downgrade", "Throttle", "Halt"]), "Panic"),
            }
        ),
        max_size=4,
    )
    pricing = st.lists(
        st.fixed_dictionaries(
            {
                "model": st.text(min_size=0, max_size=8),
                "inputPer1kTokens": maybe(amount, "-1", "1e3"),
                "outputPer1kTokens": maybe(amount, "abc"),
            }
        ),
        max_size=3,
    )
    return st.fixed_dictionaries(
        {
            "connectionRef": st.fixed_dictionaries(
                {"name": maybe(st.sampled_from(["conn", "missing"]), "Conn")}
            ),
            "limit": st.fixed_dictionaries(
                {"amount": maybe(amount, "0", "0.00", "-5", "1.23456")},
                optional={"currency": maybe(st.just("USD"), "EUR")},
            ),
            "thresholds": thresholds,
        },
        optional={
            "period": maybe(st.sampled_from(["Daily", "Monthly"]), "Weekly"),
            "filter": optional(
                services=st.lists(CE_SERVICES, max_size=3),
                tags=st.dictionaries(DNS, st.lists(DNS, max_size=2), max_size=2),
            ),
            "enforcement": maybe(st.sampled_from(["Enforce", "Monitor"]), "Ignore"),
            "evaluationInterval": maybe(st.sampled_from(["1h", "24h", "10m"]), "1s", *BAD_DURATION),
            "pricing": pricing,
        },
    )


def policy_specs(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    maybe = mutating(bad)
    rate = st.floats(0, 1, allow_nan=False)
    client = st.fixed_dictionaries(
        {
            "name": maybe(DNS, "Agent", "-x", "a" * 41),
            "role": maybe(st.sampled_from(["viewer", "responder", "admin"]), "root"),
        },
        optional={
            "rotationPeriod": maybe(DURATION, "5s", *BAD_DURATION),
            "gracePeriod": maybe(DURATION, "0s"),
        },
    )
    return st.fixed_dictionaries(
        {
            "connectionRef": st.fixed_dictionaries(
                {"name": maybe(st.sampled_from(["conn", "missing"]), "Conn")}
            ),
            "modelRouting": st.fixed_dictionaries(
                {"simpleModel": maybe(st.just("small"), ""), "complexModel": st.just("large")},
                optional={"complexityThreshold": maybe(rate, 1.5, -0.1)},
            ),
        },
        optional={
            "budgetRef": st.fixed_dictionaries({"name": maybe(st.sampled_from(["budget", "missing"]), "B")}),
            "severities": st.lists(
                st.fixed_dictionaries(
                    {"name": maybe(st.sampled_from(["critical", "high", "low"]), "Critical", "9x")},
                    optional={
                        "autoRemediate": st.booleans(),
                        "requireApproval": st.booleans(),
                        "quorum": maybe(st.integers(1, 9), 0, 10),
                    },
                ),
                max_size=3,
            ),
            "sampling": optional(detectionRate=maybe(rate, 2.0), minDetectionRate=maybe(rate, -1.0)),
            "storage": optional(
                incidentTable=maybe(DNS, "ab", "bad name"),
                eventStream=maybe(DNS, "bad/name"),
                artifactBucket=maybe(DNS, "Bad_Bucket", "a..b"),
                stateMachine=maybe(DNS, "bad.name"),
                stateMachineRoleArn=maybe(st.just("arn:aws:iam::123456789012:role/sfn"), "arn:bad"),
                deletionPolicy=maybe(st.sampled_from(["Retain", "Delete"]), "Keep"),
            ),
            "apiClients": st.lists(client, max_size=3),
            "auth": optional(
                jwt=optional(
                    algorithm=maybe(st.sampled_from(["EdDSA", "ES256", "RS256"]), "HS256"),
                    ttl=maybe(st.sampled_from(["1m", "15m", "1h"]), "10s", "2d"),
                    issuer=maybe(st.just("ic"), ""),
                ),
                rateLimit=optional(
                    requestsPerMinute=maybe(st.integers(1, 1000), 0), burst=maybe(st.integers(1, 100), 0)
                ),
            ),
        },
    )


PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}


@pytest.fixture
def fuzz_namespace(kube: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str) -> Iterator[str]:
    """The session namespace with a Ready connection ``conn`` (to moto) and a budget ``budget``."""
    services = ("sts", "dynamodb", "s3", "kinesis", "stepfunctions")
    apply_connection(kube, namespace, moto.url, services=services)
    wait_for_condition(kube, "awsconnection", namespace, "conn", timeout=60, logs=operator.logs)
    yield namespace


def reconciled(item: dict[str, Any]) -> bool:
    ready = condition(item, "Ready")
    current = (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
    return bool(
        ready and ready.get("reason") and ready.get("status") in ("True", "False", "Unknown") and current
    )


def create(custom: Any, namespace: str, kind: str, name: str, spec: dict[str, Any]) -> tuple[bool, str]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], body)
    except kubernetes.client.ApiException as exc:
        assert exc.status == 422, f"{kind} {name}: admission answered {exc.status}: {exc.body}\nspec: {spec}"
        message = str(json.loads(exc.body or "{}").get("message", ""))
        return False, message
    return True, ""


def test_fuzzed_specs_are_rejected_by_field_or_reconciled_with_a_reason(
    kube: Kube, operator: OperatorProcess, moto: MotoServer, fuzz_namespace: str
) -> None:
    namespace = fuzz_namespace
    api = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))  # type: ignore[no-untyped-call]
    custom = kubernetes.client.CustomObjectsApi(api)
    log_start = len(operator.process.log_text())
    serial = itertools.count()
    accepted: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []

    def run(kind: str, strategy: st.SearchStrategy[dict[str, Any]]) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not LONG,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(spec=strategy)
        def apply_one(spec: dict[str, Any]) -> None:
            name = f"{kind.lower()[:6]}-{next(serial)}"
            ok, message = create(custom, namespace, kind, name, spec)
            if ok:
                accepted.append((kind, name))
            else:
                assert FIELD.search(message), f"rejection names no field: {message!r}\nspec: {spec}"
                rejected.append((kind, message))

        apply_one()

    run("AwsConnection", st.one_of(connection_specs(moto.url, False), connection_specs(moto.url, True)))
    run("BudgetPolicy", st.one_of(budget_specs(False), budget_specs(True)))
    run("IncidentPolicy", st.one_of(policy_specs(False), policy_specs(True)))

    # Every admitted object reaches a Ready condition with a reason, for its current generation.
    pending = set(accepted)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for kind in PLURALS:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind])
            items = cast(dict[str, Any], listed)["items"]
            for item in items:
                if reconciled(item):
                    pending.discard((kind, item["metadata"]["name"]))
        time.sleep(1)
    assert not pending, (
        f"admitted, never reconciled to a Ready condition: {sorted(pending)}\n{operator.logs()}"
    )

    # The operator still reconciles: a valid canary becomes Ready.
    create(
        custom,
        namespace,
        "IncidentPolicy",
        "canary",
        {"connectionRef": {"name": "conn"}, "modelRouting": {"simpleModel": "s", "complexModel": "c"}},
    )
    wait_for_condition(kube, "incidentpolicy", namespace, "canary", timeout=60, logs=operator.logs)
    log = operator.process.log_text()[log_start:]
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    reasons = sorted(
        {
            str((condition(kube.get(k.lower(), namespace, n), "Ready") or {}).get("reason"))
            for k, n in accepted
        }
    )
    print(f"{len(accepted)} admitted (Ready reasons {reasons}), {len(rejected)} rejected at admission")
