"""How long N AwsConnections take to become Ready, and how many API writes each costs.

    python -m bench.awsconnections 200

Starts the local control plane (with an audit log of writes), moto in server
mode and the operator; creates one Secret and N AwsConnections (services
sts, s3, dynamodb) with one kubectl apply, and polls until all are Ready. API
writes per object are counted from the apiserver's audit log: every create,
update or patch by the operator (not by kubectl) on an AwsConnection or on
Events. Then it waits ``--idle`` seconds and counts the writes made while
nothing changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube

NAMESPACE = "bench"


def manifests(count: int, endpoint: str) -> str:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        }
    ]
    for i in range(count):
        docs.append(
            {
                "apiVersion": "incidentcommander.io/v1alpha1",
                "kind": "AwsConnection",
                "metadata": {"name": f"conn-{i:04d}"},
                "spec": {
                    "region": "us-east-1",
                    "endpointUrl": endpoint,
                    "credentials": {"secretRef": {"name": "aws-creds"}},
                    "services": ["sts", "s3", "dynamodb"],
                    "probeInterval": "60s",
                },
            }
        )
    return yaml.safe_dump_all(docs)


def ready_count(kube: Kube) -> int:
    items = json.loads(kube.kubectl("get", "awsconnections", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    return sum(
        1
        for item in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in item.get("status", {}).get("conditions", [])
        )
        and item["status"].get("observedGeneration") == item["metadata"]["generation"]
    )


def operator_writes(audit_log: Path, since: float = 0.0) -> Counter[str]:
    """The operator's writes (kopf's and our client's user agents), by resource, from the audit log."""
    counts: Counter[str] = Counter()
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        agent = entry.get("userAgent", "")
        if ref.get("namespace") != NAMESPACE or not agent.startswith(("incident-commander", "kopf")):
            continue
        stamp = entry.get("requestReceivedTimestamp", "")
        if since and time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone < since:
            continue
        counts[ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("count", type=int, nargs="?", default=200)
    parser.add_argument(
        "--idle", type=float, default=30.0, help="seconds to watch for writes after convergence"
    )
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="ic-bench-"))
    bin_dir = build_binaries()
    with LocalControlPlane(bin_dir=bin_dir, audit_writes=True) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", "crds")
        kube.kubectl("wait", "--for=condition=Established", "-f", "crds")
        kube.kubectl("create", "namespace", NAMESPACE)
        moto = MotoServer.start(logs)
        operator = OperatorProcess.start(kube, logs)
        try:
            started = time.monotonic()
            kube.apply(manifests(args.count, moto.url), NAMESPACE)
            applied = time.monotonic() - started
            samples = []
            while (ready := ready_count(kube)) < args.count:
                samples.append((time.monotonic() - started, ready))
                if time.monotonic() - started > 600:
                    raise SystemExit(f"only {ready}/{args.count} Ready after 600 s; logs in {logs}")
                time.sleep(0.5)
            converged = time.monotonic() - started
            writes = operator_writes(plane.audit_log)
            idle_from = time.time()
            time.sleep(args.idle)
            idle_writes = operator_writes(plane.audit_log, since=idle_from)
        finally:
            operator.stop()
            moto.stop()

    half = next((t for t, r in samples if r >= args.count / 2), converged)
    print(f"AwsConnections: {args.count} (services sts, s3, dynamodb; one Secret)")
    print(f"kubectl apply took           {applied:6.2f} s")
    print(f"half Ready after             {half:6.2f} s")
    print(f"all Ready after              {converged:6.2f} s")
    total = sum(writes.values())
    print(f"operator API writes          {total} ({total / args.count:.2f} per object): {dict(writes)}")
    print(f"writes in {args.idle:.0f} s of idle      {sum(idle_writes.values())} {dict(idle_writes)}")
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    print(
        f"poll samples                 {len(samples)} (median gap {statistics.median(gaps or [0.0]):.2f} s)"
    )


if __name__ == "__main__":
    main()
