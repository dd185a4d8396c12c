"""The real operator process against the real apiserver: every kind reaches Ready for its
current generation, follows edits, and leaves the status alone when nothing changed.

The examples' AwsConnection points at 127.0.0.1:4566 (the demo's moto); here it is
repointed at the test session's moto server.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import EXAMPLES
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, condition, wait_for_condition

pytestmark = pytest.mark.integration

OBJECTS = [
    ("awsconnection", "emulator"),
    ("budgetpolicy", "platform-monthly"),
    ("incidentpolicy", "production"),
]


def apply_examples(kube: Kube, namespace: str, moto: MotoServer) -> None:
    text = "\n---\n".join(p.read_text() for p in sorted(EXAMPLES.glob("*.yaml")))
    kube.apply(text.replace("http://127.0.0.1:4566", moto.url), namespace)


def test_each_kind_becomes_ready_for_its_generation_also_after_an_edit(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    apply_examples(crds, namespace, moto)
    for kind, name in OBJECTS:
        obj = wait_for_condition(crds, kind, namespace, name, "Ready", "True", logs=operator.logs)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 1
        ready = condition(obj, "Ready")
        assert ready is not None and ready["observedGeneration"] == 1

    crds.kubectl(
        "patch",
        "awsconnection",
        "emulator",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"region":"eu-west-1"}}',
    )
    crds.kubectl(
        "patch",
        "budgetpolicy",
        "platform-monthly",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"limit":{"amount":"3000"}}}',
    )
    crds.kubectl(
        "patch",
        "incidentpolicy",
        "production",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"sampling":{"detectionRate":0.5}}}',
    )
    for kind, name in OBJECTS:
        obj = wait_for_condition(crds, kind, namespace, name, "Ready", "True", logs=operator.logs)
        assert obj["metadata"]["generation"] == 2
        assert obj["status"]["observedGeneration"] == 2
    assert crds.get("incidentpolicy", namespace, "production")["status"]["effectiveSamplingRate"] == 0.5


def example_connection(endpoint: str) -> str:
    """The examples' Secret and AwsConnection, the connection pointed at ``endpoint``."""
    secret = (EXAMPLES / "aws-credentials-secret.yaml").read_text()
    connection = (EXAMPLES / "awsconnection.yaml").read_text().replace("http://127.0.0.1:4566", endpoint)
    return f"{secret}\n---\n{connection}"


def ready_budget(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> dict[str, object]:
    """The examples' connection (Ready first, so the budget never waits for it), then its budget."""
    crds.apply(example_connection(moto.url), namespace)
    wait_for_condition(crds, "awsconnection", namespace, "emulator", logs=operator.logs)
    crds.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "budgetpolicy.yaml"))
    return wait_for_condition(crds, "budgetpolicy", namespace, "platform-monthly", logs=operator.logs)


def event_reasons(crds: Kube, namespace: str, name: str) -> list[str]:
    return crds.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "jsonpath={range .items[*]}{.reason}{'\\n'}{end}",
    ).stdout.split()


def test_a_budget_applied_with_its_connection_waits_for_the_first_probe(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    """One ``kubectl apply`` of everything: the budget does not report ConnectionNotReady (with a
    Warning Event) while its connection is being probed for the first time."""
    budget = (EXAMPLES / "budgetpolicy.yaml").read_text()
    crds.apply(f"{example_connection(moto.url)}\n---\n{budget}", namespace)
    obj = wait_for_condition(crds, "budgetpolicy", namespace, "platform-monthly", logs=operator.logs)
    assert event_reasons(crds, namespace, "platform-monthly") == [condition(obj, "Ready")["reason"]]  # type: ignore[index]


def test_a_budget_on_a_connection_whose_first_probe_fails_says_so(
    crds: Kube, operator: OperatorProcess, namespace: str
) -> None:
    budget = (EXAMPLES / "budgetpolicy.yaml").read_text()
    # Nothing listens on port 9 of loopback: every probe is refused at once.
    crds.apply(f"{example_connection('http://127.0.0.1:9')}\n---\n{budget}", namespace)
    obj = wait_for_condition(
        crds,
        "budgetpolicy",
        namespace,
        "platform-monthly",
        status="False",
        reason="ConnectionNotReady",
        logs=operator.logs,
    )
    assert "emulator" in condition(obj, "Ready")["message"]  # type: ignore[index,operator]


def test_ready_transition_posts_one_event_and_status_stays_put(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    obj = ready_budget(crds, operator, moto, namespace)
    settled_version = obj["metadata"]["resourceVersion"]  # type: ignore[index]
    time.sleep(3)
    again = crds.get("budgetpolicy", namespace, "platform-monthly")
    assert again["metadata"]["resourceVersion"] == settled_version, "object was written while nothing changed"
    events = event_reasons(crds, namespace, "platform-monthly")
    assert events == [condition(again, "Ready")["reason"]], events  # type: ignore[index]


def test_operator_restart_resumes_without_rewriting_status(
    crds: Kube,
    operator: OperatorProcess,
    moto: MotoServer,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    obj = ready_budget(crds, operator, moto, namespace)
    transition = condition(obj, "Ready")["lastTransitionTime"]  # type: ignore[index,arg-type]
    second = OperatorProcess.start(
        crds, tmp_path_factory.mktemp("second-operator"), extra_args=("--namespace", namespace)
    )
    try:
        time.sleep(3)
        after = crds.get("budgetpolicy", namespace, "platform-monthly")
        assert condition(after, "Ready")["lastTransitionTime"] == transition  # type: ignore[index]
        assert "Traceback" not in second.process.log_text()
    finally:
        assert second.stop() == 0
