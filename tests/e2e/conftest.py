"""The e2e tier: the chart, installed with helm, running the image built here on a real node.

One node per session (``tests/node/cluster.py``: control plane, containerd, kubelet, kube-proxy,
cluster DNS, all inside a network namespace the session creates), moto inside the same namespace
behind a Service, and one release of the chart that the tests share in file order: install,
examples, helm test, upgrade, pod deletion, partition. ``kube`` here is that cluster's kubectl
(run inside the namespace), so the shared ``namespace`` fixture works unchanged.

Needs root and the packages ``tests/node/install-packages.sh`` installs (``make e2e`` does both).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane.localcluster import build_binaries
from tests.e2e import support
from tests.node.cluster import PAUSE_IMAGE, NodeCluster
from tests.node.images import operator_image_archive, pause_image_archive, relabelled_archive
from tests.support.kube import Kube, wait_for_condition


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    if os.geteuid() != 0:
        pytest.fail(
            "the e2e tier needs root (network namespaces, cgroups, containerd): run `make e2e` as root"
        )
    controlplane_bin = build_binaries()
    node_bin = build_binaries("node")
    image_cache = node_bin.parent / "images"
    operator_image = operator_image_archive()
    images = {
        PAUSE_IMAGE: pause_image_archive(node_bin / "pause", image_cache, PAUSE_IMAGE),
        support.IMAGE: operator_image,
        # What `helm upgrade` rolls out to: the same layers under a new tag and a new image ID.
        support.NEXT_IMAGE: relabelled_archive(
            operator_image, support.NEXT_IMAGE, {"org.opencontainers.image.version": "e2e-next"}, image_cache
        ),
    }
    cluster = NodeCluster(
        controlplane_bin=controlplane_bin,
        node_bin=node_bin,
        netpol_bin=build_binaries("netpol"),
        images=images,
    )
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def kube(node: NodeCluster) -> Kube:
    return node.kube


@pytest.fixture(scope="session")
def moto(node: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.InClusterMoto]:
    server = support.InClusterMoto.start(node, tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def release(
    node: NodeCluster, moto: support.InClusterMoto, tmp_path_factory: pytest.TempPathFactory
) -> support.Release:
    """The chart, installed once with the image built here; tests upgrade it in place."""
    del moto  # the operator's environment points at it
    chart_release = support.Release(node=node, values_dir=Path(tmp_path_factory.mktemp("values")))
    chart_release.install()
    return chart_release


@pytest.fixture(scope="session")
def demo(kube: Kube, release: support.Release, moto: support.InClusterMoto) -> str:
    """examples/ applied once, pointed at the in-cluster moto, and Ready."""
    kube.kubectl("create", "namespace", support.DEMO)
    kube.apply("\n---\n".join(support.iter_examples(moto.url)), support.DEMO)
    for kind, name in support.OBJECTS:
        wait_for_condition(kube, kind, support.DEMO, name, timeout=240, logs=release.logs)
    return support.DEMO
