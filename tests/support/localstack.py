"""LocalStack community in host mode (no Docker), as a process on loopback for tests/localstack.

The venv comes from tests/localstack/install.sh (Python 3.13, pinned localstack-core, cached
outside the tree). Each server gets its own FILESYSTEM_ROOT under the test's temp dir, a free
loopback port, no DNS server and no outbound calls of its own (analytics, certificate download);
the kinesis-mock that install.sh put into the venv's static libs is linked in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.controlplane.localcluster import free_port
from tests.support.processes import ManagedProcess

INSTALL = Path(__file__).resolve().parents[1] / "localstack" / "install.sh"
SERVICES = ("sts", "iam", "s3", "dynamodb", "kinesis", "stepfunctions")
"""What hack/kind/localstack.yaml enables, so the tier sees what kind's LocalStack would."""


def install_localstack() -> Path:
    """Make (or reuse) the LocalStack venv; return its directory."""
    out = subprocess.run(
        ["bash", str(INSTALL)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=3600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return Path(out.stdout.strip().splitlines()[-1])


def health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as response:  # noqa: S310 - loopback
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return None


@dataclass
class LocalStackServer:
    process: ManagedProcess
    url: str
    root: Path

    @classmethod
    def start(cls, work_dir: Path, *, services: tuple[str, ...] = SERVICES) -> LocalStackServer:
        venv = install_localstack()
        root = work_dir / "localstack-root"
        static = root / "usr" / "lib"
        static.mkdir(parents=True, exist_ok=True)
        (static / "localstack").symlink_to(venv / "static" / "usr" / "lib" / "localstack")
        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work_dir),
            "OVERRIDE_IN_DOCKER": "0",  # host mode: no Docker, this process is the runtime
            "FILESYSTEM_ROOT": str(root),
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "SERVICES": ",".join(services),
            "DNS_ADDRESS": "0",  # no DNS server of its own (it would bind port 53)
            "DISABLE_EVENTS": "1",  # no analytics
            "SKIP_SSL_CERT_DOWNLOAD": "1",  # a self-signed certificate instead of a download
        }
        process = ManagedProcess(
            "localstack",
            [str(venv / "bin" / "python"), "-m", "localstack.runtime.main"],
            log_path=work_dir / "localstack.log",
            env=env,
        )
        process.start()
        url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: "Ready." in process.log_text() and health(url) is not None, timeout=180)
        return cls(process=process, url=url, root=root)

    def requests(self) -> list[str]:
        """LocalStack's request log lines ("AWS s3.CreateBucket => 200"), in order."""
        return [
            line.split("localstack.request.aws")[-1]
            for line in self.process.log_text().splitlines()
            if "localstack.request.aws" in line
        ]

    def stop(self) -> int | None:
        """SIGTERM: LocalStack shuts its services down and exits 0 (it may take a while)."""
        return self.process.stop(timeout=60)
