"""``make demo`` as a user runs it, with the ports chosen on its command line: moto and the
operator answer where they were told to, the examples become Ready against that AWS port, and
Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.controlplane.localcluster import build_binaries, free_port
from tests.support.processes import http_ok

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_listens_on_the_ports_it_is_given_and_stops_them(tmp_path: Path) -> None:
    build_binaries()  # a first build takes minutes; the demo's own start is what is timed below
    aws, metrics, api, liveness = free_port(), free_port(), free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.controlplane.demo",
                f"--aws-port={aws}",
                f"--metrics-port={metrics}",
                f"--api-port={api}",
                f"--liveness-port={liveness}",
                "--namespace=demo-ports",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Running." not in log.read_text(errors="replace"):
            assert demo.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        text = log.read_text()
        assert f"AWS emulator: http://127.0.0.1:{aws}" in text
        assert f"operator metrics: http://127.0.0.1:{metrics}/metrics" in text
        assert f"Operator API: http://127.0.0.1:{api}" in text
        assert http_ok(f"http://127.0.0.1:{aws}/moto-api/data.json")
        assert http_ok(f"http://127.0.0.1:{metrics}/metrics")
        assert http_ok(f"http://127.0.0.1:{liveness}/healthz")
        # Ready against the moto on the chosen port, not 4566 (the demo waited for all three).
        assert "production" in text and "platform-monthly" in text
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=120)
    assert code == 0, log.read_text(errors="replace")
    assert "stopping ..." in log.read_text()
    assert not any(port_open(p) for p in (aws, metrics, api, liveness))
