"""Traces reach a real OTLP collector over gRPC and over HTTP.

The collector is rotel's agent (PyPI ``rotel``, a Rust OTLP collector) with its debug exporter,
which prints every received span with its resource, ids, parent and attributes; the test parses
that output. The operator subprocess gets only the standard ``OTEL_*`` variables (plus the
downward-API ones the chart sets), reconciles an AwsConnection on moto, answers one API request
carrying a W3C ``traceparent``, and is stopped with SIGTERM: the spans arrive through the batch
processor's flush at shutdown.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rotel

from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, wait_for_condition
from tests.support.policies import apply_connection
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.integration

API = "incidentcommander.io/v1alpha1"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@dataclass
class ReceivedSpan:
    resource: dict[str, str]
    header: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.header.get("Name", "")

    @property
    def trace_id(self) -> str:
        return self.header.get("Trace ID", "")

    @property
    def span_id(self) -> str:
        return self.header.get("ID", "")

    @property
    def parent_id(self) -> str:
        return self.header.get("Parent ID", "")


ATTRIBUTE = re.compile(r"^\s+-> ([^:]+): \w+\((.*)\)$")
HEADER = re.compile(r"^\s*(Trace ID|Parent ID|ID|Name|Kind|Status code)\s*: ?(.*)$")


def parse_debug_output(text: str) -> list[ReceivedSpan]:
    """rotel's ``--debug-log traces --debug-log-verbosity detailed`` output, span by span."""
    spans: list[ReceivedSpan] = []
    resource: dict[str, str] = {}
    section: dict[str, str] | None = None
    span: ReceivedSpan | None = None
    for line in text.splitlines():
        if line.startswith("ResourceSpans #"):
            resource, section, span = {}, None, None
        elif line.startswith("Resource attributes:"):
            section = resource
        elif line.startswith("Span #"):
            span = ReceivedSpan(resource=resource)
            spans.append(span)
            section = None
        elif span is not None and line.startswith("Attributes:"):
            section = span.attributes
        elif line.startswith(("Events:", "Links:", "ScopeSpans")):
            section = None
        elif (match := ATTRIBUTE.match(line)) and section is not None:
            section[match.group(1)] = match.group(2)
        elif span is not None and (match := HEADER.match(line)):
            span.header[match.group(1)] = match.group(2).strip()
    return spans


@dataclass
class Collector:
    process: ManagedProcess
    grpc_port: int
    http_port: int

    def endpoint(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def spans(self) -> list[ReceivedSpan]:
        return parse_debug_output(self.process.log_text())


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    tmp = tmp_path_factory.mktemp("rotel")
    grpc_port, http_port = free_port(), free_port()
    agent = Path(rotel.__file__).parent / "rotel-agent"
    process = ManagedProcess(
        "rotel",
        [
            str(agent),
            "start",
            "--exporter=blackhole",
            "--debug-log=traces",
            "--debug-log-verbosity=detailed",
            f"--otlp-grpc-endpoint=127.0.0.1:{grpc_port}",
            f"--otlp-http-endpoint=127.0.0.1:{http_port}",
            f"--pid-file={tmp / 'rotel.pid'}",
            f"--log-file={tmp / 'rotel-agent.log'}",
        ],
        log_path=tmp / "rotel.out",
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    process.start()
    try:
        process.wait_until(lambda: listening(grpc_port) and listening(http_port), timeout=20)
        yield Collector(process=process, grpc_port=grpc_port, http_port=http_port)
    finally:
        process.stop()


def reconciled(operator: OperatorProcess) -> bool:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return bool(
        re.search(
            r'^incident_commander_reconciliations_total\{kind="AwsConnection",outcome="success"\} [1-9]',
            text,
            re.MULTILINE,
        )
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_reconcile_and_api_spans_reach_an_otlp_collector(
    crds: Kube, moto: MotoServer, collector: Collector, namespace: str, tmp_path: Path, protocol: str
) -> None:
    pod = f"incident-commander-{protocol.split('/')[0]}-{uuid.uuid4().hex[:6]}"
    operator = OperatorProcess.start(
        crds,
        tmp_path,
        extra_args=(f"--namespace={namespace}",),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint(protocol),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "K8S_NAMESPACE_NAME": "ic-system",
            "K8S_POD_NAME": pod,
        },
    )
    try:
        apply_connection(crds, namespace, moto.url)
        wait_for_condition(crds, "awsconnection", namespace, "conn", timeout=60, logs=operator.logs)
        # Another operator (the session's) may have written Ready first: wait for this one's own pass.
        operator.process.wait_until(lambda: reconciled(operator), timeout=30)
        request = urllib.request.Request(  # noqa: S310 - the operator's loopback API
            f"{operator.api_url}/v1/summary", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310
        assert refused.value.code == 401
        # The session's operator may have set Ready first: wait until this operator's own probe
        # round has ended (the batch processor exports every few seconds) before stopping it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            s.name == "reconcile AwsConnection"
            and s.resource.get("k8s.pod.name") == pod
            and s.attributes.get("incidentcommander.outcome") == "success"
            for s in collector.spans()
        ):
            time.sleep(0.25)
    finally:
        code = operator.stop()
    assert code == 0, operator.logs()

    # Everything was flushed at shutdown; give the collector a moment to print it.
    deadline = time.monotonic() + 15
    ours: list[ReceivedSpan] = []
    while time.monotonic() < deadline:
        ours = [s for s in collector.spans() if s.resource.get("k8s.pod.name") == pod]
        if any(s.name == "GET /v1/summary" for s in ours) and any(s.name.startswith("STS.") for s in ours):
            break
        time.sleep(0.25)
    assert ours, f"no spans from {pod}:\n{collector.process.log_tail(40)}\n{operator.logs()}"

    resource = ours[0].resource
    assert resource["service.name"] == "incident-commander"
    assert resource["service.version"]
    assert resource["k8s.namespace.name"] == "ic-system"

    reconciles = [
        s
        for s in ours
        if s.name == "reconcile AwsConnection"
        and s.attributes.get("incidentcommander.name") == "conn"
        and s.attributes.get("incidentcommander.outcome") == "success"
    ]
    assert reconciles, [s.name for s in ours]
    for span in reconciles:
        assert span.parent_id == ""  # each pass is the root of its own trace
        assert span.attributes["k8s.namespace.name"] == namespace
        assert span.attributes["incidentcommander.kind"] == "AwsConnection"
    by_id = {s.span_id: s for s in ours}
    aws_children = [s for s in ours if s.parent_id in {r.span_id for r in reconciles}]
    names = {s.name for s in aws_children}
    assert {"STS.GetCallerIdentity"} <= names and any(n.startswith("DynamoDB.") for n in names), names
    for child in aws_children:
        assert child.header["Kind"] == "SPAN_KIND_CLIENT"
        assert child.trace_id == by_id[child.parent_id].trace_id
        assert child.attributes.get("rpc.system") == "aws-api"

    [api] = [s for s in ours if s.name == "GET /v1/summary"]
    assert api.trace_id == TRACE_ID and api.parent_id == PARENT_ID  # the caller's trace continues
    assert api.header["Kind"] == "SPAN_KIND_SERVER"
    assert api.attributes["http.route"] == "/v1/summary"
    assert api.attributes["http.request.method"] == "GET"
    assert api.attributes["http.response.status_code"] == "401"
