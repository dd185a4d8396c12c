"""``make demo``: local control plane + moto + the operator + examples/, until Ctrl-C.

moto listens on 127.0.0.1:4566 by default (LocalStack's port, which examples/awsconnection.yaml
names); ``--aws-port`` moves it, and the examples are applied pointed at the port in use. The
operator's metrics, API and liveness ports are free ones unless given. Everything started here is
stopped on exit, in reverse order. ``make demo DEMO_ARGS="--aws-port 4570 --api-port 8443"``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, wait_for_condition

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_ENDPOINT = "http://127.0.0.1:4566"
"""The AWS endpoint examples/awsconnection.yaml names; replaced by the demo's own."""
DEMO_OBJECTS = [
    ("awsconnection", "emulator"),
    ("budgetpolicy", "platform-monthly"),
    ("incidentpolicy", "production"),
]


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--aws-port", type=port, default=4566, help="moto's port (0: a free one)")
    parser.add_argument("--metrics-port", type=port, default=0, help="operator /metrics (0: a free one)")
    parser.add_argument("--api-port", type=port, default=0, help="operator API (0: a free one)")
    parser.add_argument("--liveness-port", type=port, default=0, help="operator /healthz (0: a free one)")
    parser.add_argument("--namespace", default="incident-demo", help="namespace of the examples")
    return parser.parse_args(argv)


def examples(aws_url: str) -> str:
    """examples/*.yaml as one stream, the AwsConnection pointed at ``aws_url``."""
    text = "\n---\n".join(p.read_text() for p in sorted((REPO / "examples").glob("*.yaml")))
    return text.replace(EXAMPLES_ENDPOINT, aws_url)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = Path(tempfile.mkdtemp(prefix="ic-demo-"))
    bin_dir = build_binaries()
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(LocalControlPlane(bin_dir=bin_dir))
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        moto = MotoServer.start(logs, port=args.aws_port or None)
        stack.callback(moto.stop)
        kube.kubectl("apply", "-f", str(REPO / "crds"))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        operator = OperatorProcess.start(
            kube,
            logs,
            log_format="text",
            liveness_port=args.liveness_port,
            metrics_port=args.metrics_port,
            api_port=args.api_port,
        )
        stack.callback(operator.stop)
        namespace = args.namespace
        kube.kubectl("create", "namespace", namespace)
        kube.apply(examples(moto.url), namespace)
        for kind, name in DEMO_OBJECTS:
            wait_for_condition(kube, kind, namespace, name, timeout=60, logs=operator.logs)
        print(kube.kubectl("get", "incidentcommander", "-A").stdout, flush=True)
        print(
            f"Running. In another shell:\n  export KUBECONFIG={plane.kubeconfig}\n"
            f"  export PATH={bin_dir}:$PATH\n  kubectl get incidentcommander -A\n"
            f"AWS emulator: {moto.url}   operator metrics: {operator.metrics_url}\n"
            f"Operator API: {operator.api_url}  (docs/api.md), e.g.\n"
            f"  KEY=$(kubectl get secret -n {namespace} production-triage-agent-api-key"
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
