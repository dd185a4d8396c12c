"""N objects of each kind against the local control plane and moto: time to Ready, RSS, writes, idle CPU.

    python -m bench.reconcile_scale 100
    python -m bench.reconcile_scale 1000 --idle 60

One run, in this order:

1. **Floor.** The same 3N objects (plus the Secret) are created in namespace ``floor``, where
   bench/floor.py (a process of its own, no operator watching) does the same work as the
   operator: one watch per kind; per index the AWS calls the operator must make (STS identity,
   ledger read, Cost Explorer figure and forecast, the policy's storage through the operator's
   own provisioner) with one shared boto3 client per service, its own moto server (so neither run
   sees the other's AWS state), one status patch per object and the policy's sealed credential
   Secrets (the issuer's crash-safe sequence). The time runs from the first create to the moment
   the bench's watches have seen all Ready.
2. **Operator.** The operator (``--namespace bench``) runs; the same objects are created in
   namespace ``bench`` the same way (16 threads, Kubernetes client); the time runs from the first
   create to the moment its watches (one per kind) have seen all 3N Ready with
   ``observedGeneration`` current. Per object:
   an AwsConnection (services ``[sts]``, moto, ``probeInterval`` 24h), a BudgetPolicy on it
   (Cost Explorer filter on DynamoDB, ``evaluationInterval`` 24h), an IncidentPolicy on it with
   ``budgetRef`` to that budget, default storage (DynamoDB, Kinesis, S3, Step Functions in
   moto) and one API client.
3. **Idle.** ``--settle`` seconds after convergence (the last objects' watch events, kopf's
   per-object workers winding down, the garbage collector: reported apart), then ``--idle``
   seconds: operator CPU seconds (from ``/proc``); the operator's API writes (from the apiserver's
   audit log) over both, while nothing changes.
4. **Floor again** (unless ``--no-floor-after``): the same objects in namespace ``floor-after``,
   a fresh moto. The machine's speed moves under a run (other tenants share its cores), so the
   ratios are against the mean of the two floor runs, one on each side of the operator's.

Between phases the finished phase's objects are deleted (not timed), so each phase runs on a
control plane holding only its own objects
(``--keep-objects`` leaves them in place, as the bench did before the seventh session).

Reported: times and operator/floor for wall time and for CPU (the sum over the reconciler's
process, its moto, kube-apiserver and etcd, from the first create to all Ready; and the
reconciler's process alone), a speed probe before and after each phase (``speed_probe``: whether
both phases ran on an equally fast machine), the apiserver's own count of the requests it served
in each phase (reads included), operator peak RSS (``VmHWM``), API writes per object by resource
(audit log, user agents of the operator and kopf; the floor's from the audit log too), CPU seconds
of every process during convergence (to see which one is the bottleneck: the operator, moto, the
apiserver or etcd), idle CPU and idle writes. ``--json PATH`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import kubernetes
from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube

GROUP, VERSION = "incidentcommander.io", "v1alpha1"
PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}
THREADS = 16
CLEAR_QUIET_S = 10.0
CLEAR_TIMEOUT_S = 600.0
TICKS = os.sysconf("SC_CLK_TCK")


def scraped_value(metrics_url: str, family: str) -> float:
    """One unlabelled sample from the operator's /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 - loopback
        for line in response.read().decode().splitlines():
            if line.startswith(family + " "):
                return float(line.split()[1])
    raise LookupError(f"{family} not in {metrics_url}")


SCRAPES = 3


def scrape_cost(metrics_url: str, pid: int) -> dict[str, float]:
    """What one Prometheus scrape of ``/metrics`` costs the operator once idle: its CPU-s and wall
    time per scrape (the mean of SCRAPES), the exposition's size and its number of samples."""
    before, started = cpu_seconds(pid), time.monotonic()
    body = b""
    for _ in range(SCRAPES):
        with urllib.request.urlopen(metrics_url, timeout=120) as response:  # noqa: S310 - loopback
            body = response.read()
    return {
        "cpu_s": (cpu_seconds(pid) - before) / SCRAPES,
        "wall_s": (time.monotonic() - started) / SCRAPES,
        "bytes": len(body),
        "samples": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
    }


_REQUEST_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def apiserver_requests(api: kubernetes.client.ApiClient) -> Counter[str]:
    """The apiserver's own count of the requests it served, by verb and resource (reads too, which
    the audit log leaves out: it records writes only, so as not to cost the apiserver CPU)."""
    response = api.call_api("GET", f"{api.configuration.host}/metrics", _request_timeout=30)
    response.read()  # type: ignore[no-untyped-call]
    counts: Counter[str] = Counter()
    for line in cast(bytes, response.data).decode().splitlines():
        match = _REQUEST_SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(1)))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{labels.get('verb', '?')} {resource}"] += int(float(match.group(2)))
    return counts


def requests_between(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """What was served in between, by verb and resource, most first (the bench's own polls and
    creates included: they are the same in both phases)."""
    served = after - before
    return dict(sorted(served.items(), key=lambda kv: -kv[1]))


def objects(count: int, endpoint: str) -> list[dict[str, Any]]:
    """The Secret, then per index a connection, a budget on it and a policy on both."""
    docs: list[dict[str, Any]] = []
    for i in range(count):
        conn, budget, policy = f"conn-{i:04d}", f"budget-{i:04d}", f"policy-{i:04d}"
        docs.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "AwsConnection",
                "metadata": {"name": conn},
                "spec": {
                    "region": "us-east-1",
                    "endpointUrl": endpoint,
                    "credentials": {"secretRef": {"name": "aws-creds"}},
                    "services": ["sts"],
                    "probeInterval": "24h",
                },
            }
        )
        docs.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BudgetPolicy",
                "metadata": {"name": budget},
                "spec": {
                    "connectionRef": {"name": conn},
                    "period": "Monthly",
                    "limit": {"amount": "1000.00", "currency": "USD"},
                    "filter": {"services": ["Amazon DynamoDB"]},
                    "thresholds": [
                        {"percent": 80, "action": "Downgrade"},
                        {"percent": 100, "action": "Halt"},
                    ],
                    "evaluationInterval": "24h",
                    "pricing": [
                        {"model": "small", "inputPer1kTokens": "0.001", "outputPer1kTokens": "0.002"}
                    ],
                },
            }
        )
        docs.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "IncidentPolicy",
                "metadata": {"name": policy},
                "spec": {
                    "connectionRef": {"name": conn},
                    "budgetRef": {"name": budget},
                    "modelRouting": {"simpleModel": "small", "complexModel": "large"},
                    "storage": {"deletionPolicy": "Retain"},
                    "apiClients": [{"name": "agent", "role": "responder"}],
                },
            }
        )
    return docs


def api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = THREADS * 2
    return kubernetes.client.ApiClient(configuration)


def prepare_namespace(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """The namespace and the connections' credentials Secret (before the clock starts)."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace))
    )
    core.create_namespaced_secret(
        namespace,
        kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="aws-creds"),
            string_data={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        ),
    )


def clear_namespace(api: kubernetes.client.ApiClient, namespace: str) -> float:
    """Delete a finished phase's objects, so that every phase starts on a control plane holding
    only its own. One collection delete per resource; the bench's objects carry no finalizer, so
    they are gone when it returns. (The namespace stays: this control plane's controller manager
    may not delete namespaces.)

    Then it waits for the garbage collector to go quiet: it reads back every deleted Secret that
    had an owner (one GET each, most answered 404), for minutes at N = 1,000, and the apiserver
    serving those reads inside the next phase counted 2,100 GETs of Secrets against the operator
    (audit log: user agent kube-controller-manager). Returns the seconds it took, which no phase
    counts."""
    started = time.monotonic()
    custom = kubernetes.client.CustomObjectsApi(api)
    for plural in PLURALS.values():
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    core = kubernetes.client.CoreV1Api(api)
    core.delete_collection_namespaced_secret(namespace)
    core.delete_collection_namespaced_event(namespace)
    reads, quiet_since = -1, time.monotonic()
    while time.monotonic() - started < CLEAR_TIMEOUT_S:
        time.sleep(2.0)
        now_reads = apiserver_requests(api)["GET secrets"]
        if now_reads != reads:
            reads, quiet_since = now_reads, time.monotonic()
        elif time.monotonic() - quiet_since >= CLEAR_QUIET_S:
            break
    return time.monotonic() - started


def create_all(api: kubernetes.client.ApiClient, namespace: str, docs: list[dict[str, Any]]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)

    def create(doc: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[doc["kind"]], doc)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, docs))


def speed_probe() -> float:
    """CPU seconds this process takes for a fixed piece of Python work (the least of three).

    The machine's speed moves under the bench (other tenants share the cores): in one run the
    floor's own process took 31.5 CPU-s for the work that took it 54.6 in the run before. The
    probe, taken before and after each phase, says whether the two phases ran on the same
    machine; a ratio between phases whose probes differ is not a ratio of work."""
    times = []
    for _ in range(3):
        start = time.process_time()
        total = 0
        for i in range(1_500_000):
            total += i * i % 7
        times.append(time.process_time() - start)
    return min(times)


def _ready(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    if status.get("observedGeneration") != item["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def wait_all_ready(
    api: kubernetes.client.ApiClient, namespace: str, count: int, started: float, timeout: float
) -> tuple[float, dict[str, float]]:
    """Watch until every kind has ``count`` Ready objects: (total seconds, seconds per kind).

    A watch per kind, not a poll: listing 1,000 objects of each kind every couple of seconds cost
    the apiserver CPU in proportion to the wait, so the slower side paid more for the bench's own
    reads, and the bench's decoding of the lists took CPU from both sides' two cores."""
    per_kind: dict[str, float] = {}
    deadline = started + timeout

    def follow(kind: str, plural: str) -> None:
        custom = kubernetes.client.CustomObjectsApi(api)
        ready: set[str] = set()
        version = ""
        while time.monotonic() < deadline:
            if not version:  # first, or the watch expired (410 Gone): list again
                listed = cast(
                    dict[str, Any], custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
                )
                ready = {i["metadata"]["name"] for i in listed["items"] if _ready(i)}
                version = listed["metadata"]["resourceVersion"]
            if len(ready) >= count:
                per_kind[kind] = time.monotonic() - started
                return
            try:
                version = _watch_ready(custom, namespace, plural, version, ready, count, deadline)
            except kubernetes.client.ApiException as error:
                if error.status != 410:
                    raise
                version = ""

    with ThreadPoolExecutor(len(PLURALS)) as pool:
        list(pool.map(follow, PLURALS, PLURALS.values()))  # raises what a watcher raised
    if len(per_kind) < len(PLURALS):
        raise TimeoutError(f"only {sorted(per_kind)} all {count} Ready after {timeout:.0f} s")
    return max(per_kind.values()), per_kind


def _watch_ready(
    custom: kubernetes.client.CustomObjectsApi,
    namespace: str,
    plural: str,
    version: str,
    ready: set[str],
    count: int,
    deadline: float,
) -> str:
    """Follow one kind from ``version``, keeping ``ready`` (the names of its Ready objects), until
    ``count`` are or the watch ends; return the version to go on from ("" to list again)."""
    stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        plural,
        resource_version=version,
        allow_watch_bookmarks=True,
        timeout_seconds=max(1, min(60, int(deadline - time.monotonic()))),
    )
    for event in stream:
        item = event["object"]
        if event["type"] == "ERROR":
            return ""
        version = item["metadata"]["resourceVersion"]
        if event["type"] == "BOOKMARK":
            continue
        if event["type"] != "DELETED" and _ready(item):
            ready.add(item["metadata"]["name"])
        else:
            ready.discard(item["metadata"]["name"])
        if len(ready) >= count:
            break
    return version


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (moto's and kopf's threads are in utime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def audit_writes(
    audit_log: Path, namespace: str, *, agents: tuple[str, ...], since: datetime | None = None
) -> Counter[str]:
    """Writes by verb and resource in ``namespace`` by clients whose user agent starts with ``agents``."""
    counts: Counter[str] = Counter()
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if ref.get("namespace") != namespace or not entry.get("userAgent", "").startswith(agents):
            continue
        if since is not None:
            stamp = datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if stamp < since:
                continue
        key = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[f"{entry.get('verb')} {key}"] += 1
    return counts


def start_moto(logs: Path, name: str, *, record: bool) -> MotoServer:
    """A moto server of one phase; with ``record`` it records every request (moto's recorder)."""
    env = {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(logs / f"{name}.recording")}
    return MotoServer.start(logs, name=name, env=env if record else None)


def aws_operations(recording: Path) -> Counter[str]:
    """Requests by service and operation from a moto recording: the target header of JSON
    protocols, the Action of query protocols, method and subresource for S3."""
    counts: Counter[str] = Counter()
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        url = urllib.parse.urlsplit(entry["url"])
        if url.path.startswith("/moto-api"):
            continue
        target = headers.get("x-amz-target")
        if target:
            counts[target.split(".")[-1]] += 1
            continue
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        action = urllib.parse.parse_qs(body).get("Action")
        if action:
            counts[action[0]] += 1
        else:
            counts[
                f"s3 {entry['method']} ?{url.query.split('=')[0]}" if url.query else f"s3 {entry['method']}"
            ] += 1
    return counts


def measure_cpu(pids: dict[str, int], action: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = action()
    return result, {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}


def fmt_counter(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1])) or "none"


def run_floor(
    api: kubernetes.client.ApiClient,
    plane: LocalControlPlane,
    logs: Path,
    n: int,
    timeout: float,
    record: bool,
    namespace: str = "floor",
) -> dict[str, Any]:
    """Phase 1 (and 4): bench/floor.py against its own moto, in ``namespace``."""
    moto = start_moto(logs, f"moto-{namespace}", record=record)
    try:
        docs = objects(n, moto.url)
        prepare_namespace(api, namespace)
        floor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.floor",
                "--kubeconfig",
                str(plane.kubeconfig),
                "--namespace",
                namespace,
                "--count",
                str(n),
                "--endpoint",
                moto.url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert floor.stdout is not None
            first = floor.stdout.readline()  # the floor is started and watching
            if not first.strip():
                raise RuntimeError(f"the floor did not start (exit {floor.wait()})")
            pids = {
                "floor": floor.pid,
                "moto": moto.process.process.pid,  # type: ignore[union-attr]
                "kube-apiserver": plane.processes["kube-apiserver"].pid,
                "etcd": plane.processes["etcd"].pid,
            }
            floor_before = cpu_seconds(floor.pid)
            served_before = apiserver_requests(api)
            started = time.monotonic()

            def converge() -> tuple[float, float]:
                create_all(api, namespace, docs)
                created = time.monotonic() - started
                return created, wait_all_ready(api, namespace, n, started, timeout)[0]

            (created, total), cpu = measure_cpu({k: v for k, v in pids.items() if k != "floor"}, converge)
            served = requests_between(served_before, apiserver_requests(api))
            own = json.loads(floor.stdout.readline())
            floor.wait(timeout=60)
        finally:
            if floor.poll() is None:
                floor.kill()
                floor.wait()
    finally:
        moto.stop()
    cpu = {"floor": own["cpu_s"] - floor_before, **cpu}
    time.sleep(2)  # let the audit backend flush
    writes = audit_writes(plane.audit_log, namespace, agents=("incident-commander-floor",))
    result = {
        "created_s": created,
        "all_ready_s": total,
        "cpu_s": cpu,
        "cpu_total_s": sum(cpu.values()),
        "peak_rss_mb": own["peak_rss_mb"],
        "aws_requests": own["aws_requests"],
        "aws_requests_total": own["aws_requests_total"],
        "writes": own["writes"],
        "writes_per_object": own["writes_total"] / (3 * n),
        "audit_writes": dict(writes),
        "apiserver_requests": served,
    }
    if record:
        result["aws_operations"] = dict(aws_operations(logs / f"moto-{namespace}.recording"))
    return result


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("count", type=int, nargs="?", default=100, help="objects of each kind")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured after settling")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds after convergence before idle is measured"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up waiting for Ready after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--no-floor-after",
        dest="floor_after",
        action="store_false",
        help="skip the floor's second run after the operator (the ratios are then against one run)",
    )
    parser.add_argument(
        "--keep-objects",
        action="store_true",
        help="leave each phase's objects in place for the phases after it (by default each phase's "
        "namespace is deleted, and gone, before the next phase starts)",
    )
    parser.add_argument(
        "--record-aws",
        action="store_true",
        help="record every AWS request (moto's recorder, which costs moto CPU) and report both "
        "sides' requests by operation: a check that the floor makes the operator's calls",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="an extra operator argument (repeatable), e.g. --operator-arg=--aws-client-cache=4000",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable of the operator (repeatable), for diagnostics such as "
        "PYTHONMALLOC=malloc or a PYTHONPATH with a sitecustomize",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    n = args.count

    logs = Path(tempfile.mkdtemp(prefix="ic-scale-"))
    print(f"logs in {logs}; load before: {os.getloadavg()}", flush=True)
    bin_dir = build_binaries()
    results: dict[str, Any] = {
        "count": n,
        "objects": 3 * n,
        "loadavg_before": os.getloadavg(),
        "operator_args": args.operator_arg,
        "operator_env": args.operator_env,
    }
    with LocalControlPlane(bin_dir=bin_dir, audit_writes=True, workdir=logs / "controlplane") as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", "crds")
        kube.kubectl("wait", "--for=condition=Established", "-f", "crds")
        api = api_client(plane.kubeconfig)

        # 1. The same-work floor.
        probes = {"before_floor": speed_probe()}
        floor = run_floor(api, plane, logs, n, args.timeout, args.record_aws)
        probes["after_floor"] = speed_probe()
        results["floor"] = floor
        print(
            f"floor: created in {floor['created_s']:.1f} s, all Ready after {floor['all_ready_s']:.1f} s",
            flush=True,
        )
        if not args.keep_objects:
            results["cleared_s"] = {"floor": clear_namespace(api, "floor")}

        # 2. The operator, with a moto of its own.
        moto = start_moto(logs, "moto", record=args.record_aws)
        try:
            docs = objects(n, moto.url)
            prepare_namespace(api, "bench")
            operator = OperatorProcess.start(
                kube,
                logs,
                extra_args=("--namespace", "bench", *args.operator_arg),
                env=dict(item.split("=", 1) for item in args.operator_env),
            )
            try:
                pids = {
                    "operator": operator.process.process.pid,  # type: ignore[union-attr]
                    "moto": moto.process.process.pid,  # type: ignore[union-attr]
                    "kube-apiserver": plane.processes["kube-apiserver"].pid,
                    "etcd": plane.processes["etcd"].pid,
                }
                rss_start = rss_mb(pids["operator"])  # started, ready, no objects yet: the fixed base
                probes["before_operator"] = speed_probe()
                served_before = apiserver_requests(api)
                started = time.monotonic()

                def converge() -> tuple[float, dict[str, float]]:
                    create_all(api, "bench", docs)
                    results["operator_created_s"] = time.monotonic() - started
                    return wait_all_ready(api, "bench", n, started, args.timeout)

                (total, per_kind), cpu = measure_cpu(pids, converge)
                served = requests_between(served_before, apiserver_requests(api))
                time.sleep(2)  # let the audit backend flush
                writes = audit_writes(plane.audit_log, "bench", agents=("incident-commander", "kopf"))
                rss_converged = peak_rss_mb(pids["operator"])
                probes["after_operator"] = speed_probe()

                # 3. Settling, then idle.
                idle_from = datetime.now(UTC)
                _, settle_cpu = measure_cpu(pids, lambda: time.sleep(args.settle))
                _, idle_cpu = measure_cpu(pids, lambda: time.sleep(args.idle))
                time.sleep(2)
                idle_writes = audit_writes(
                    plane.audit_log, "bench", agents=("incident-commander", "kopf"), since=idle_from
                )
                rss_peak = peak_rss_mb(pids["operator"])
                scrape = scrape_cost(operator.metrics_url, pids["operator"])  # after idle: not in it
                client_builds = scraped_value(
                    operator.metrics_url, "incident_commander_aws_client_builds_total"
                )
                operator_log = operator.process.log_text()
            finally:
                operator.stop()
        finally:
            moto.stop()
        if not args.keep_objects:
            results["cleared_s"]["bench"] = clear_namespace(api, "bench")

        # 4. The floor again, so that a change of the machine's speed falls on both sides.
        floors = [floor]
        if args.floor_after:
            probes["before_floor_after"] = speed_probe()
            results["floor_after"] = run_floor(api, plane, logs, n, args.timeout, False, "floor-after")
            probes["after_floor_after"] = speed_probe()
            floors.append(results["floor_after"])
            print(f"floor again: all Ready after {results['floor_after']['all_ready_s']:.1f} s", flush=True)

    def mean(values: Iterable[float]) -> float:
        listed = list(values)
        return sum(listed) / len(listed)

    floor_total = mean(f["all_ready_s"] for f in floors)
    floor_cpu = mean(f["cpu_total_s"] for f in floors)
    floor_process = mean(f["cpu_s"]["floor"] for f in floors)
    floor_probe = mean(v for k, v in probes.items() if "floor" in k)
    total_writes = sum(writes.values())
    status_writes_idle = sum(v for k, v in idle_writes.items() if k.endswith("/status"))
    cpu_total = sum(cpu.values())
    results.update(
        {
            "operator": {
                "all_ready_s": total,
                "per_kind_s": per_kind,
                "created_s": results["operator_created_s"],
            },
            "ratio_to_floor": total / floor_total,
            "cpu_total_s": cpu_total,
            "floor_runs": len(floors),
            "cpu_ratio_to_floor": cpu_total / floor_cpu,
            "process_cpu_ratio_to_floor": cpu["operator"] / floor_process,
            "operator_peak_rss_mb": rss_peak,
            "operator_rss_mb_at_start": rss_start,
            "operator_peak_rss_mb_at_convergence": rss_converged,
            "aws_client_builds": client_builds,
            "scrape": scrape,
            "writes": dict(writes),
            "writes_per_object": total_writes / (3 * n),
            "apiserver_requests": served,
            "convergence_cpu_s": cpu,
            "settle_s": args.settle,
            "settle_cpu_s": settle_cpu,
            "idle_s": args.idle,
            "idle_cpu_s": idle_cpu,
            "idle_cpu_percent_of_core": 100 * idle_cpu["operator"] / args.idle,
            "idle_writes": dict(idle_writes),
            "idle_status_writes": status_writes_idle,
            "tracebacks_in_operator_log": operator_log.count("Traceback"),
            "loadavg_after": os.getloadavg(),
            "speed_probe_s": probes,
            "speed_ratio_operator_to_floor": (probes["before_operator"] + probes["after_operator"])
            / 2
            / floor_probe,
        }
    )
    print(f"objects: {n} of each kind, {3 * n} in all")
    if "cleared_s" in results:
        print(
            "namespaces deleted between phases "
            + ", ".join(f"{k} in {v:.1f} s" for k, v in results["cleared_s"].items())
        )
    for run in floors:
        print(
            f"floor: all Ready after          {run['all_ready_s']:8.1f} s (creates {run['created_s']:.1f} s; "
            f"{run['cpu_total_s']:.1f} CPU-s)"
        )
    print(
        f"floor: {floor['aws_requests_total']} AWS requests, "
        f"{floor['writes_per_object']:.2f} writes per object, "
        f"peak RSS {floor['peak_rss_mb']:.1f} MB"
    )
    print("CPU seconds of the floor         " + ", ".join(f"{k} {v:.1f}" for k, v in floor["cpu_s"].items()))
    print(
        f"operator: all Ready after       {total:8.1f} s (creates {results['operator_created_s']:.1f} s; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in per_kind.items())
        + ")"
    )
    print("CPU seconds while converging    " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    print(f"operator / floor, wall          {total / floor_total:8.2f} (against the mean of {len(floors)})")
    print(
        f"operator / floor, CPU           {results['cpu_ratio_to_floor']:8.2f} "
        f"({cpu_total:.1f} / {floor_cpu:.1f} CPU-s; reconciler process alone "
        f"{results['process_cpu_ratio_to_floor']:.2f})"
    )
    print(
        "speed probe (CPU-s, less is faster) "
        + ", ".join(f"{k} {v:.3f}" for k, v in probes.items())
        + f": the operator's phase ran {results['speed_ratio_operator_to_floor']:.2f}x as slow as the floor's"
    )
    print(f"operator peak RSS               {rss_peak:8.1f} MB ({rss_start:.1f} MB at start, no objects)")
    print(f"boto3 clients built             {client_builds:8.0f}")
    print(
        f"one /metrics scrape, idle       {scrape['cpu_s']:8.3f} CPU-s, {scrape['wall_s']:.3f} s "
        f"({scrape['samples']:.0f} samples, {scrape['bytes'] / 1e6:.1f} MB)"
    )
    print(
        f"operator API writes             {total_writes} ({total_writes / (3 * n):.2f} per object): "
        f"{fmt_counter(writes)}"
    )
    print(f"apiserver requests, floor       {fmt_counter(Counter(floor['apiserver_requests']))}")
    print(f"apiserver requests, operator    {fmt_counter(Counter(served))}")
    print(f"settling {args.settle:.0f} s after convergence: operator CPU {settle_cpu['operator']:.2f} s")
    print(
        f"idle {args.idle:.0f} s after that: operator CPU {idle_cpu['operator']:.2f} s "
        f"({results['idle_cpu_percent_of_core']:.2f} % of a core); "
        + ", ".join(f"{k} {v:.1f} s" for k, v in idle_cpu.items() if k != "operator")
    )
    print(f"idle writes                     {fmt_counter(idle_writes)} (status: {status_writes_idle})")
    print(f"Tracebacks in the operator log  {results['tracebacks_in_operator_log']}")
    print(f"load after: {os.getloadavg()}")
    if args.record_aws:
        results["aws_operations"] = dict(aws_operations(logs / "moto.recording"))
        print(f"AWS requests, operator: {fmt_counter(Counter(results['aws_operations']))}")
        print(f"AWS requests, floor:    {fmt_counter(Counter(floor['aws_operations']))}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
