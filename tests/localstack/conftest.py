"""One LocalStack (host mode) for the tier; the control plane and the operator are the session's
(tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.localstack import LocalStackServer


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackServer]:
    server = LocalStackServer.start(tmp_path_factory.mktemp("localstack"))
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"LocalStack exited with {code}:\n{server.process.log_tail()}"
