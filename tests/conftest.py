"""Fixtures shared by every test tier.

Integration fixtures start real components: the local control plane (etcd,
kube-apiserver, kube-controller-manager), moto in server mode and the operator
as a subprocess. ``IC_TEST_KUBECONFIG`` points the same tests at another
cluster (kind) instead of the local control plane.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    external = os.environ.get("IC_TEST_KUBECONFIG")
    if external:
        bin_dir = os.environ.get("IC_TEST_BIN_DIR")
        yield Kube(kubeconfig=Path(external), bin_dir=Path(bin_dir) if bin_dir else None)
        return
    bin_dir = build_binaries()
    with LocalControlPlane(bin_dir=bin_dir) as plane:
        yield Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)


@pytest.fixture(scope="session")
def crds(kube: Kube) -> Kube:
    kube.kubectl("apply", "-f", str(CRDS))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    return kube


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def web_identity_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one directory whose token files the session's operator lets AwsConnections use."""
    return tmp_path_factory.mktemp("web-identity")


@pytest.fixture(scope="session")
def operator(
    crds: Kube, tmp_path_factory: pytest.TempPathFactory, web_identity_dir: Path
) -> Iterator[OperatorProcess]:
    # Some tests write budget ledgers directly, as another replica's API would: read them often.
    handle = OperatorProcess.start(
        crds,
        tmp_path_factory.mktemp("operator"),
        extra_args=("--all-namespaces", "--ledger-refresh=5s"),
        env={"IC_WEB_IDENTITY_TOKEN_DIRS": str(web_identity_dir)},
    )
    try:
        yield handle
    finally:
        code = handle.stop()
        assert code == 0, f"operator exited with {code}:\n{handle.logs()}"
