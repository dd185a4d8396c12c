"""A control plane of a test's own, for tests whose operator must be the only one reconciling.

The session's operator watches every namespace of the session control plane, so a test that
kills and restarts its own operator uses one of these instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.kube import Kube

CRDS = Path(__file__).resolve().parents[2] / "crds"


@contextmanager
def isolated_plane(*namespaces: str, controller_manager: bool = False) -> Iterator[Kube]:
    """A fresh control plane with our CRDs Established and the given namespaces created."""
    bin_dir = build_binaries()
    with LocalControlPlane(bin_dir=bin_dir, start_controller_manager=controller_manager) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        for namespace in namespaces:
            kube.kubectl("create", "namespace", namespace)
        yield kube
