"""Crash safety of key issuance and rotation: SIGKILL the operator at random moments, restart it,
and check that every client ends with exactly one valid key matching its Secret, with no orphans.

Runs on a control plane of its own so that the session's operator does not reconcile the same
objects while this test's operator is down.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.support.endpoints import OperatorProcess
from tests.support.isolated import isolated_plane
from tests.support.kube import Kube, wait_for
from tests.support.policies import client_key, key_index, verifies

pytestmark = pytest.mark.integration

RUNS = 30
NAMESPACE = "crash"
CLIENTS = [
    {"name": f"agent-{i}", "role": "responder", "rotationPeriod": "1h", "gracePeriod": "2s"}
    for i in range(12)
]
# Twelve clients make one rotation about 37 writes long, a window wide enough for random kills to land in.


@pytest.fixture(scope="module")
def isolated() -> Iterator[Kube]:
    with isolated_plane(NAMESPACE) as kube:
        yield kube


def manifest(clients: list[dict[str, str]]) -> dict[str, object]:
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "IncidentPolicy",
        "metadata": {"name": "crashy"},
        "spec": {
            "connectionRef": {"name": "absent"},
            "modelRouting": {"simpleModel": "s", "complexModel": "c"},
            "apiClients": clients,
        },
    }


def rotation_done(kube: Kube) -> bool:
    index = key_index(kube, NAMESPACE, "crashy")
    return not index.rotation_queue and not any(e.state == "Pending" for e in index.entries)


def wait_until_live(kube: Kube, operator: OperatorProcess) -> None:
    """The operator has listed the policy and finished any work left over (status follows the spec)."""
    wait_for(
        kube,
        "incidentpolicy",
        NAMESPACE,
        "crashy",
        lambda o: (
            (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
            and rotation_done(kube)
        ),
        timeout=30,
        describe="a settled policy",
        logs=operator.logs,
    )


def index_version(core: Any) -> str:
    """The key index Secret's resourceVersion, read with the Python client (kubectl is too slow to
    notice a write sequence that lasts a few hundred milliseconds)."""
    return str(core.read_namespaced_secret("crashy-api-key-index", NAMESPACE).metadata.resource_version)


@pytest.mark.timeout(900)  # thirty operator starts; on a loaded machine each takes several seconds
def test_sigkill_during_issuance_and_rotation_loses_nothing(isolated: Kube, tmp_path: Path) -> None:
    rng = random.Random(20261125)  # noqa: S311 - picks test timings, not secrets
    kube = isolated
    kube.apply(manifest(CLIENTS), NAMESPACE)

    # Warm-up: how long one rotation of every client takes here, to aim the kills inside it.
    operator = OperatorProcess.start(kube, tmp_path, extra_args=("--namespace", NAMESPACE))
    wait_until_live(kube, operator)
    started = time.monotonic()
    kube.kubectl(
        "annotate",
        "--overwrite",
        "incidentpolicy",
        "crashy",
        "-n",
        NAMESPACE,
        "incidentcommander.io/rotate=warm-up",
    )
    while not (key_index(kube, NAMESPACE, "crashy").rotate_handled == "warm-up" and rotation_done(kube)):
        time.sleep(0.02)
    rotation_seconds = time.monotonic() - started
    operator.stop()

    core = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    )
    kills: list[tuple[str, float]] = []
    interrupted = 0  # kills that left a write sequence half done (a Pending key or queued rotations)
    for run in range(RUNS):
        operator = OperatorProcess.start(kube, tmp_path, extra_args=("--namespace", NAMESPACE))
        wait_until_live(kube, operator)
        before = index_version(core)
        action = rng.choice(["rotate", "rotate", "drop-client", "restore-clients"])
        if action == "rotate":
            kube.kubectl(
                "annotate",
                "--overwrite",
                "incidentpolicy",
                "crashy",
                "-n",
                NAMESPACE,
                f"incidentcommander.io/rotate=run-{run}",
            )
        elif action == "drop-client":
            kube.apply(manifest(CLIENTS[: rng.randint(1, len(CLIENTS) - 1)]), NAMESPACE)
        else:
            kube.apply(manifest(CLIENTS), NAMESPACE)
        # Aim inside the write sequence: wait for its first write (the key index changes), then kill
        # at a random point of a typical sequence. Timing from the action alone missed too often on
        # a loaded machine (the watch latency varies more than a rotation lasts).
        deadline = time.monotonic() + 2 * rotation_seconds + 5
        while index_version(core) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        delay = rng.uniform(0.0, 0.7) * rotation_seconds
        time.sleep(delay)
        code = operator.process.stop(signal.SIGKILL)
        assert code == -signal.SIGKILL
        kills.append((action, round(delay, 3)))
        index = key_index(kube, NAMESPACE, "crashy")
        if any(e.state == "Pending" for e in index.entries) or index.rotation_queue:
            interrupted += 1

    kube.apply(manifest(CLIENTS), NAMESPACE)
    operator = OperatorProcess.start(kube, tmp_path, extra_args=("--namespace", NAMESPACE))
    try:

        def settled(obj: dict[str, object]) -> bool:
            status = obj.get("status") or {}
            names = [c["name"] for c in status.get("apiClients", [])]  # type: ignore[union-attr]
            return names == [c["name"] for c in CLIENTS] and all(
                c["state"] == "Active"
                for c in status.get("apiClients", [])  # type: ignore[union-attr]
            )

        wait_for(
            kube,
            "incidentpolicy",
            NAMESPACE,
            "crashy",
            settled,
            timeout=30,
            describe="all clients Active",
            logs=operator.logs,
        )
        index = key_index(kube, NAMESPACE, "crashy")
        assert not [e for e in index.entries if e.state == "Pending"], "a Pending entry survived"
        for client in CLIENTS:
            active = index.for_client(client["name"], "Active")
            assert len(active) == 1, (client["name"], active, kills)
            secret = client_key(kube, NAMESPACE, "crashy", client["name"])
            assert secret["keyId"] == active[0].key_id
            assert verifies(kube, NAMESPACE, "crashy", secret["apiKey"])
        secrets = kube.kubectl(
            "get",
            "secrets",
            "-n",
            NAMESPACE,
            "-l",
            "incidentcommander.io/policy=crashy,incidentcommander.io/purpose=api-key",
            "-o",
            "name",
        ).stdout.split()
        assert sorted(secrets) == sorted(f"secret/crashy-{c['name']}-api-key" for c in CLIENTS)
        known = {e.key_id for e in index.entries}
        for name in secrets:
            data = client_key(
                kube, NAMESPACE, "crashy", name.split("/", 1)[1][len("crashy-") : -len("-api-key")]
            )
            assert data["keyId"] in known, "a Secret holds a key the index does not know"
        assert "Traceback" not in operator.process.log_text()
    finally:
        assert operator.stop() == 0
    print(
        f"rotating {len(CLIENTS)} clients: {rotation_seconds:.2f}s; {RUNS} kills, {interrupted} mid-way:",
        kills,
    )
    assert interrupted >= 3, "no kill landed inside an issuance or rotation; the test proved nothing"
