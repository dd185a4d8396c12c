"""The fault matrix: each fault during reconciliation, then convergence with nothing lost.

Every scenario deploys an AwsConnection (through the fault proxy in front of moto), a BudgetPolicy
and an IncidentPolicy with API clients and storage, changes something while the fault is on, and
then checks the same invariants: all three Ready for their current generation; every client has
exactly one Active key, held by its Secret and verifying, no orphan Secret and no Pending entry
(keys); the usage ledger and the budget's status hold exactly the sum of the reports the API
acknowledged, reports being retried with their Idempotency-Key until acknowledged (usage); and the
operator did not crash or restart unless the test killed it. ``IC_RELIABILITY=long`` runs the long
variant (more rounds, longer faults); see docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import kubernetes
import pytest

from tests.reliability.rig import (
    LONG,
    Rig,
    UsageClient,
    api_key_of,
    check_keys,
    check_usage,
    clients,
    deploy,
    operator_alive,
    policy_manifest,
    wait_converged,
    wait_ready,
)
from tests.support.http import call
from tests.support.kube import condition, wait_for
from tests.support.processes import http_ok

pytestmark = pytest.mark.integration

ROUNDS = 20 if LONG else 3


def namespace(tag: str) -> str:
    return f"rel-{tag}-{uuid.uuid4().hex[:5]}"


def setup_scenario(
    rig: Rig, tag: str, client_count: int = 3
) -> tuple[str, list[dict[str, str]], UsageClient]:
    ns = namespace(tag)
    client_list = clients(client_count)
    deploy(rig, ns, client_list)
    wait_converged(rig, ns, "policy", client_list)
    usage = UsageClient(rig=rig, namespace=ns, client="agent-0")
    return ns, client_list, usage


def rotate(rig: Rig, ns: str, value: str) -> None:
    rig.kube.kubectl(
        "annotate",
        "--overwrite",
        "incidentpolicy",
        "policy",
        "-n",
        ns,
        f"incidentcommander.io/rotate={value}",
    )


def finish(rig: Rig, ns: str, client_list: list[dict[str, str]], *usages: UsageClient) -> None:
    """Stop the usage clients, wait for convergence, check keys and the ledger's exact total."""
    for usage in usages:
        usage.stop()
    wait_converged(rig, ns, "policy", client_list)
    check_usage(rig, ns, sum((u.expected for u in usages), start=Decimal(0)))
    for usage in usages:
        print(
            f"{ns} {usage.client}: {usage.answered} usage reports acknowledged ({usage.duplicates} as "
            f"duplicates of an attempt whose answer was lost), {usage.retries} retries, {usage.statuses}"
        )


def test_apiserver_restart_during_reconciliation(healthy: Rig) -> None:
    rig = healthy
    pid = rig.operator_pid()
    ns, client_list, usage = setup_scenario(rig, "apiserver")
    usage.start()
    rng = random.Random(1)  # noqa: S311 - test timing, not a secret
    for restart in range(3 if LONG else 1):
        client_list = clients(3 + restart + 1)
        rig.kube.apply(policy_manifest("policy", client_list), ns)
        rotate(rig, ns, f"restart-{restart}")
        time.sleep(rng.uniform(0.0, 0.5))  # inside the issuance the change starts
        rig.plane.restart("kube-apiserver", down_for=rng.uniform(1.0, 3.0))
    finish(rig, ns, client_list, usage)
    operator_alive(rig, pid)


def test_slow_etcd(healthy: Rig) -> None:
    rig = healthy
    pid = rig.operator_pid()
    ns, client_list, usage = setup_scenario(rig, "etcd")
    usage.start()
    client_list = clients(5)
    rig.kube.apply(policy_manifest("policy", client_list), ns)
    rotate(rig, ns, "slow-etcd")
    # etcd answers nothing for 1.5 s (3 s in the long run) out of every 2 (3.5): every write and read
    # of the reconciliation above waits on it.
    for _ in range(12 if LONG else 3):
        rig.plane.pause("etcd")
        time.sleep(3.0 if LONG else 1.5)
        rig.plane.resume("etcd")
        time.sleep(0.5)
    finish(rig, ns, client_list, usage)
    operator_alive(rig, pid)


AWS_FAULTS: list[tuple[str, dict[str, str], str]] = [
    ("down", {"*": "reset"}, "EndpointUnreachable"),
    ("slow", {"*": "slow"}, "Timeout"),
    ("throttling", {"sts": "throttle-query", "*": "throttle-json"}, "Throttled"),
]


def test_aws_endpoint_down_slow_and_throttling(healthy: Rig) -> None:
    """One fault after the other on the AWS endpoint, each while usage is reported and policies change."""
    rig = healthy
    pid = rig.operator_pid()
    ns, client_list, usage = setup_scenario(rig, "aws")
    usage.start()
    seen: dict[str, str] = {}
    for round_, (fault, faults, _) in enumerate(AWS_FAULTS):
        for service, kind in faults.items():
            rig.proxy.set_fault(service, kind)
        if fault == "down":
            rig.proxy.stop()  # new connections are refused, pooled ones reset
        try:
            # A new policy needs AWS storage while AWS is unusable; the edit of the old one needs keys only.
            rig.kube.apply(policy_manifest(f"second-{fault}", clients(1, "other")), ns)
            client_list = clients(4 + round_)
            rig.kube.apply(policy_manifest("policy", client_list), ns)
            wait_for(
                rig.kube,
                "awsconnection",
                ns,
                "conn",
                lambda o: (condition(o, "Ready") or {}).get("status") == "False",
                timeout=60,
                describe="Ready=False while AWS is " + fault,
                logs=rig.logs_tail,
            )
            seen[fault] = str(
                (condition(rig.kube.get("awsconnection", ns, "conn"), "Ready") or {}).get("reason")
            )
            second = rig.kube.get("incidentpolicy", ns, f"second-{fault}")
            assert (condition(second, "Ready") or {}).get("status") != "True"
            time.sleep(20 if LONG else 1)
        finally:
            if fault == "down":
                rig.proxy.start()
            rig.proxy.faults.clear()
        wait_ready(rig, ns, "awsconnection", "conn")
    finish(rig, ns, client_list, usage)
    for fault, _, _ in AWS_FAULTS:
        wait_converged(rig, ns, f"second-{fault}", clients(1, "other"))
    operator_alive(rig, pid)
    # Each fault is named by its reason, except that a breaker it opened may speak first.
    for fault, _, reason in AWS_FAULTS:
        assert seen[fault] in (reason, "CircuitOpen", "ServicesUnhealthy"), seen
    print(f"{ns}: Ready reasons during the faults: {seen}")


def test_sigkill_during_issuance_rotation_and_ledger_writes(healthy: Rig) -> None:
    rig = healthy
    ns, client_list, usage = setup_scenario(rig, "sigkill", client_count=6)
    full = client_list
    usage.start()
    # A second writer of usage, so that a kill finds a ledger write in flight more often.
    second = UsageClient(rig=rig, namespace=ns, client="agent-1")
    second.start()
    rng = random.Random(20261125)  # noqa: S311 - test timing, not a secret
    actions: list[tuple[str, float]] = []
    try:
        for run in range(ROUNDS):
            action = rng.choice(["rotate", "rotate", "drop-clients", "restore-clients"])
            if action == "rotate":
                rotate(rig, ns, f"run-{run}")
            elif action == "drop-clients":
                # agent-0 and agent-1 stay: the usage clients authenticate with their keys.
                rig.kube.apply(policy_manifest("policy", full[: rng.randint(2, len(full) - 1)]), ns)
            else:
                rig.kube.apply(policy_manifest("policy", full), ns)
            delay = rng.uniform(0.05, 1.2)
            time.sleep(delay)
            rig.kill_operator()
            actions.append((action, round(delay, 2)))
            time.sleep(rng.uniform(0.0, 1.0))
            rig.start_operator()
        rig.kube.apply(policy_manifest("policy", full), ns)
    finally:
        finish(rig, ns, full, usage, second)
    print(f"kills after: {actions}")


def test_conflicts_from_concurrent_edits(healthy: Rig) -> None:
    rig = healthy
    pid = rig.operator_pid()
    ns, client_list, usage = setup_scenario(rig, "conflict", client_count=4)
    api = kubernetes.config.new_client_from_config(config_file=str(rig.kube.kubeconfig))  # type: ignore[no-untyped-call]
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    stop = threading.Event()
    edits = {"count": 0}
    targets = ["policy-api-key-index", "policy-jwt-signing-keys"] + [
        f"policy-{c['name']}-api-key" for c in client_list
    ]

    def editor(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - test timing, not a secret
        while not stop.is_set():
            body: dict[str, Any] = {"metadata": {"annotations": {"test/edit": str(rng.random())}}}
            try:
                if rng.random() < 0.7:
                    core.patch_namespaced_secret(rng.choice(targets), ns, body)
                else:
                    plural, name = rng.choice([("incidentpolicies", "policy"), ("budgetpolicies", "budget")])
                    custom.patch_namespaced_custom_object(
                        "incidentcommander.io", "v1alpha1", ns, plural, name, body
                    )
                edits["count"] += 1
            except kubernetes.client.ApiException:
                pass

    threads = [threading.Thread(target=editor, args=(seed,), daemon=True) for seed in range(4)]
    usage.start()
    for thread in threads:
        thread.start()
    try:
        for run in range(12 if LONG else 3):
            rotate(rig, ns, f"conflict-{run}")
            time.sleep(2.0 if LONG else 1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    finish(rig, ns, client_list, usage)
    operator_alive(rig, pid)
    conflicts = [
        e
        for e in rig.audit()
        if (e.get("objectRef") or {}).get("namespace") == ns
        and e.get("userAgent", "").startswith("incident-commander")
        and (e.get("responseStatus") or {}).get("code") == 409
    ]
    print(f"{edits['count']} concurrent edits; the operator got {len(conflicts)} conflicts (409)")
    assert conflicts, "no write of the operator met a conflict: the test proved nothing"


def test_watch_expiry_relists_and_forgets_what_vanished(healthy: Rig) -> None:
    """410 Gone: the operator's watches resume from a resourceVersion etcd no longer has.

    The operator is frozen (SIGSTOP) while the apiserver restarts (its watch cache restarts at the
    current revision), a policy is deleted, another edited, and etcd's history is compacted. When
    the operator thaws, its watches resume from the old resourceVersion, get 410 Gone and list
    again. The edit must be reconciled, and the deleted policy's API keys must stop working even
    though no DELETED event was ever delivered for it."""
    rig = healthy
    pid = rig.operator_pid()
    ns, client_list, usage = setup_scenario(rig, "gone")
    rig.kube.apply(policy_manifest("victim", clients(1, "doomed")), ns)
    wait_converged(rig, ns, "victim", clients(1, "doomed"))
    victim_key = api_key_of(rig, ns, "victim", "doomed-0")
    operator = rig.live_operator()
    assert token_status(operator.api_url, victim_key) == 200
    before = rig.kube.get("incidentpolicy", ns, "policy")["metadata"]["resourceVersion"]

    rig.pause_operator()
    try:
        rig.plane.restart("kube-apiserver")
        rig.kube.kubectl("delete", "incidentpolicy", "victim", "-n", ns)
        # Its Secrets go too, while the operator is frozen (as the garbage collector would delete
        # them; not left to it, whose own watches are catching up after the restart): the operator
        # never sees a DELETED event for them either.
        rig.kube.kubectl("delete", "secrets", "-n", ns, "-l", "incidentcommander.io/policy=victim")
        assert not victim_secrets(rig, ns)
        client_list = clients(4)
        rig.kube.apply(policy_manifest("policy", client_list), ns)
        revision = rig.plane.compact_etcd()
    finally:
        rig.resume_operator()
    assert int(before) < revision
    # The fault is real: a watch from the old resourceVersion is refused with 410 Gone.
    assert watch_from(rig, ns, before) == 410

    usage.start()
    finish(rig, ns, client_list, usage)
    deadline = time.monotonic() + 10
    while (status := token_status(operator.api_url, victim_key)) != 401 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 401, f"the deleted policy's API key still answers {status} after the relist"
    operator_alive(rig, pid)
    assert http_ok(operator.liveness_url)


def victim_secrets(rig: Rig, ns: str) -> list[str]:
    selector = "incidentcommander.io/policy=victim"
    return rig.kube.kubectl("get", "secrets", "-n", ns, "-l", selector, "-o", "name").stdout.split()


def token_status(api_url: str, api_key: str) -> int:
    return call(api_url, "POST", "/v1/token", headers={"Authorization": f"ApiKey {api_key}"}).status


def watch_from(rig: Rig, ns: str, resource_version: str) -> int:
    """The status of the first event of a watch of IncidentPolicies from ``resource_version``."""
    api = kubernetes.config.new_client_from_config(config_file=str(rig.kube.kubeconfig))  # type: ignore[no-untyped-call]
    custom = kubernetes.client.CustomObjectsApi(api)
    watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
    try:
        for event in watch.stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object,
            "incidentcommander.io",
            "v1alpha1",
            ns,
            "incidentpolicies",
            resource_version=resource_version,
            timeout_seconds=5,
        ):
            if event["type"] == "ERROR":
                return int(event["raw_object"].get("code") or 0)
            return 200
    except kubernetes.client.ApiException as exc:
        return int(exc.status)
    finally:
        watch.stop()  # type: ignore[no-untyped-call]
    return 200


@pytest.mark.long_only
def test_no_fault_control(healthy: Rig) -> None:
    """Sanity of the checker itself: a scenario with no fault passes every invariant."""
    rig = healthy
    ns, client_list, usage = setup_scenario(rig, "control", client_count=2)
    usage.start()
    time.sleep(1)
    finish(rig, ns, client_list, usage)
    check_keys(rig, ns, "policy", client_list)
    assert "Traceback" not in rig.new_log()
