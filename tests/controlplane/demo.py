"""``make demo``: local control plane + moto + the operator + examples/, until Ctrl-C.

moto listens on 127.0.0.1:4566 (LocalStack's port), which is what
examples/awsconnection.yaml points at. Everything started here is stopped on
exit, in reverse order.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, wait_for_condition

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "incident-demo"
DEMO_OBJECTS = [
    ("awsconnection", "emulator"),
    ("budgetpolicy", "platform-monthly"),
    ("incidentpolicy", "production"),
]


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = Path(tempfile.mkdtemp(prefix="ic-demo-"))
    bin_dir = build_binaries()
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(LocalControlPlane(bin_dir=bin_dir))
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        moto = MotoServer.start(logs, port=4566)
        stack.callback(moto.stop)
        kube.kubectl("apply", "-f", str(REPO / "crds"))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        operator = OperatorProcess.start(kube, logs, log_format="text")
        stack.callback(operator.stop)
        kube.kubectl("create", "namespace", NAMESPACE)
        kube.kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples"))
        for kind, name in DEMO_OBJECTS:
            wait_for_condition(kube, kind, NAMESPACE, name, timeout=60, logs=operator.logs)
        print(kube.kubectl("get", "incidentcommander", "-A").stdout, flush=True)
        print(
            f"Running. In another shell:\n  export KUBECONFIG={plane.kubeconfig}\n"
            f"  export PATH={bin_dir}:$PATH\n  kubectl get incidentcommander -A\n"
            f"AWS emulator: {moto.url}   operator metrics: {operator.metrics_url}\n"
            f"Operator API: {operator.api_url}  (docs/api.md), e.g.\n"
            f"  KEY=$(kubectl get secret -n {NAMESPACE} production-triage-agent-api-key"
            " -o jsonpath='{.data.apiKey}' | base64 -d)\n"
            f'  curl -s -X POST -H "Authorization: ApiKey $KEY" {operator.api_url}/v1/token\n'
            f"Logs: {logs}\nPress Ctrl-C to stop everything.",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        print("stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
