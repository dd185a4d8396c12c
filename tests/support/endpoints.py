"""The operator and the AWS emulator as real processes on loopback, as tests use them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.controlplane.localcluster import free_port
from tests.support.kube import Kube
from tests.support.processes import ManagedProcess, http_ok

SINGLE_THREADED_MOTO = (
    "import sys\n"
    "from werkzeug.serving import run_simple\n"
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n"
    "app = DomainDispatcherApplication(create_backend_app)\n"
    "run_simple('127.0.0.1', int(sys.argv[1]), app, threaded=False)\n"
)
"""moto's threaded server does not make DynamoDB ``ADD`` atomic (concurrent updates of one item lose
increments; real DynamoDB serialises them per item): ledger tests run moto single-threaded."""


def moto_client(url: str, service: str) -> Any:
    """A boto3 client with moto's test keys, for tests that seed or read AWS state directly."""
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class MotoServer:
    """moto in server mode: a real HTTP AWS endpoint, reached the way LocalStack is on kind."""

    process: ManagedProcess
    url: str

    @classmethod
    def start(
        cls,
        log_dir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        name: str = "moto",
        serial: bool = False,
    ) -> MotoServer:
        port = port or free_port()
        argv = (
            [sys.executable, "-c", SINGLE_THREADED_MOTO, str(port)]
            if serial
            else [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        )
        process = ManagedProcess(
            "moto",
            argv,
            log_path=log_dir / f"{name}.log",
            env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", **(env or {})},
        )
        process.start()
        url = f"http://127.0.0.1:{port}"
        try:
            process.wait_until(lambda: http_ok(f"{url}/moto-api/data.json"), timeout=60)
        except BaseException:
            process.stop()  # never leave a half-started emulator behind
            raise
        return cls(process=process, url=url)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class OperatorProcess:
    """``incident-commander run`` as a subprocess, the way the container runs it."""

    process: ManagedProcess
    liveness_url: str
    metrics_url: str
    api_url: str

    @classmethod
    def start(
        cls,
        kube: Kube,
        log_dir: Path,
        *,
        extra_args: tuple[str, ...] = ("--all-namespaces",),
        log_format: str = "json",
        env: dict[str, str] | None = None,
        liveness_port: int | None = None,
        metrics_port: int | None = None,
        api_port: int | None = None,
    ) -> OperatorProcess:
        """Ports not given (or 0) are free ones picked here."""
        liveness = liveness_port or free_port()
        metrics = metrics_port or free_port()
        api = api_port or free_port()
        script = Path(sys.executable).parent / "incident-commander"
        env = {
            **kube.env,
            # The default chain must never reach real AWS from a test.
            "AWS_EC2_METADATA_DISABLED": "true",
            **(env or {}),
        }
        # The operator's own state (its sealing key) goes to "default" unless a test names a namespace:
        # K8S_NAMESPACE_NAME (a pod's namespace, the default otherwise) may name one that does not exist.
        state = (
            ()
            if any(a.startswith("--state-namespace") for a in extra_args)
            else ("--state-namespace=default",)
        )
        process = ManagedProcess(
            "operator",
            [
                str(script),
                "run",
                *extra_args,
                *state,
                "--bind-address=127.0.0.1",
                f"--liveness=http://127.0.0.1:{liveness}/healthz",
                f"--metrics-port={metrics}",
                f"--api-port={api}",
                f"--log-format={log_format}",
            ],
            log_path=log_dir / "operator.log",
            env=env,
        )
        process.start()
        handle = cls(
            process=process,
            liveness_url=f"http://127.0.0.1:{liveness}/healthz",
            metrics_url=f"http://127.0.0.1:{metrics}/metrics",
            api_url=f"http://127.0.0.1:{api}",
        )
        process.wait_until(lambda: http_ok(handle.liveness_url), timeout=60)
        return handle

    def logs(self) -> str:
        return self.process.log_tail(80)

    def stop(self) -> int | None:
        return self.process.stop()
