"""A real, kubelet-less Kubernetes control plane on 127.0.0.1 for tests and the demo.

The envtest approach: upstream etcd, kube-apiserver and kube-controller-manager
(built by ``build.sh`` from pinned modules) run as child processes on free
loopback ports, with generated certificates, RBAC authorization and a
service-account token signer. Nothing is faked: what the apiserver admits here
it admits on a cluster.

Run ``python -m tests.controlplane.localcluster --kubeconfig PATH`` to keep one
up until Ctrl-C (``make demo`` does).

With ``node=NodeSupport(...)`` (the e2e tier, tests/node) it also runs what a real node needs:
kube-scheduler, the workload controllers (deployments, replica sets, endpoint slices, node
lifecycle, role aggregation, the root CA ConfigMap), the Node authorizer, and an apiserver that
advertises the node's address so the ``kubernetes`` Service has an endpoint pods can reach.
Without it nothing changes: the integration tiers keep their lean, kubelet-less control plane.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.controlplane import netns as netns_

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free a moment ago on loopback."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def build_binaries(target: str = "controlplane") -> Path:
    """Build (or reuse from the cache) the control-plane binaries (``target="node"``: kubelet,
    kube-proxy, kube-scheduler and pause); return their directory."""
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), target], check=True, stdout=subprocess.PIPE, text=True, env=env
    )
    return Path(out.stdout.strip().splitlines()[-1])


SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"


@dataclass(frozen=True)
class NodeSupport:
    """What the control plane runs for a real node (see the module docstring)."""

    node_ip: str
    """The node's address: the apiserver advertises it as the ``kubernetes`` Service's endpoint."""
    scheduler: Path
    """The kube-scheduler binary (``build.sh node`` builds it)."""


# The controllers a node's workloads need, on top of the lean set every tier runs.
NODE_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "clusterrole-aggregation-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "disruption-controller",
    "job-controller",
    "ttl-after-finished-controller",
)


@dataclass
class _Pki:
    """Certificates of one control plane, written as PEM files into ``directory``."""

    directory: Path

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "incident-commander-test-ca")])
        self.ca_cert = (
            self._builder(name, name, self.ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.write_cert("ca", self.ca_cert, self.ca_key)

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
        )

    def issue(
        self,
        stem: str,
        *,
        common_name: str,
        organization: str | None = None,
        server: bool = False,
        extra_ips: Sequence[str] = (),
    ) -> None:
        """A leaf certificate for a client identity (CN/O map to user/group) or for the apiserver."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        builder = self._builder(x509.Name(attrs), self.ca_cert.subject, key.public_key())
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                        x509.IPAddress(ipaddress.ip_address(KUBERNETES_SERVICE_IP)),
                        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        self.write_cert(stem, builder.sign(self.ca_key, hashes.SHA256()), key)

    def write_cert(self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (self.directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = self.directory / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)

    def service_account_keys(self) -> None:
        """The key pair the apiserver signs (and verifies) service-account tokens with."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.directory / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (self.directory / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def path(self, name: str) -> str:
        return str(self.directory / name)


def _kubeconfig(server: str, pki: _Pki, user: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {pki.path("ca.crt")}
users:
- name: {user}
  user:
    client-certificate: {pki.path(user + ".crt")}
    client-key: {pki.path(user + ".key")}
contexts:
- name: local
  context:
    cluster: local
    user: {user}
current-context: local
"""


@dataclass
class LocalControlPlane:
    """etcd + kube-apiserver + kube-controller-manager as child processes.

    Use as a context manager, or call ``start()``/``stop()``. ``kubeconfig`` is an
    admin (system:masters) kubeconfig; ``bin_dir`` also holds kubectl and helm.
    """

    bin_dir: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ic-controlplane-")))
    start_controller_manager: bool = True
    audit_writes: bool = False
    """Record every write (create/update/patch/delete) in ``audit.log``, for benchmarks counting writes."""
    netns: Path | None = None
    """A network namespace (``/run/netns/NAME``) to run every component in; probes run there too."""
    node: NodeSupport | None = None
    """Run what a real node needs (the e2e tier); None keeps the kubelet-less control plane."""
    spawn_prefix: Sequence[str] = ()
    """Put before every component's command line (the node tier adds its cgroup placement)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    """The arguments each component was started with (``restart`` reuses them)."""
    binaries: dict[str, Path] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    def log(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(parents=True, exist_ok=True)
        self.pki = _Pki(pki_dir)
        node_ips = [self.node.node_ip] if self.node else []
        self.pki.issue("apiserver", common_name="kube-apiserver", server=True, extra_ips=node_ips)
        self.pki.issue("admin", common_name="admin", organization="system:masters")
        self.pki.issue("controller-manager", common_name="system:kube-controller-manager")
        self.pki.service_account_keys()

        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        etcd_peer_port = free_port()
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://{LOOPBACK}:{self.etcd_port}",
                f"--advertise-client-urls=http://{LOOPBACK}:{self.etcd_port}",
                f"--listen-peer-urls=http://{LOOPBACK}:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{etcd_peer_port}",
                f"--initial-cluster=default=http://{LOOPBACK}:{etcd_peer_port}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"http://{LOOPBACK}:{self.etcd_port}/health"), timeout=timeout)

        if self.node:
            # Listen on every address of the (test-made) namespace and advertise the node's, so the
            # endpoint reconciler points the kubernetes Service at an address pods can reach.
            placement = [
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node.node_ip}",
                "--endpoint-reconciler-type=lease",
                "--authorization-mode=Node,RBAC",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
            ]
        else:
            placement = [
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
            ]

        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://{LOOPBACK}:{self.etcd_port}",
                *placement,
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={self.pki.path('apiserver.crt')}",
                f"--tls-private-key-file={self.pki.path('apiserver.key')}",
                f"--client-ca-file={self.pki.path('ca.crt')}",
                f"--service-account-key-file={self.pki.path('sa.pub')}",
                f"--service-account-signing-key-file={self.pki.path('sa.key')}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
                *self._audit_flags(),
            ],
        )
        self.kubeconfig.write_text(_kubeconfig(self.server, self.pki, "admin"))
        self._wait("kube-apiserver", self._apiserver_ready, timeout=timeout)

        if self.start_controller_manager:
            if not self.node:
                # The controllers run as system:kube-controller-manager (no per-controller service
                # accounts); the aggregation controller needs its own bootstrap role on top. (On a
                # node, each controller is its own ServiceAccount with its bootstrap role.)
                self._bind_cluster_role(
                    "ic-test:controller-manager:clusterrole-aggregation",
                    "system:controller:clusterrole-aggregation-controller",
                    user="system:kube-controller-manager",
                )
            controllers = [
                "namespace",
                "garbagecollector",
                "serviceaccount",
                "serviceaccount-token",
                "root-ca-cert-publisher",
                # Kubernetes' view/edit/admin roles pick up aggregated rules (the chart's roles
                # for our kinds) as on any cluster.
                "clusterrole-aggregation-controller",
            ]
            node_flags: list[str] = []
            if self.node:
                controllers += [c for c in NODE_CONTROLLERS if c not in controllers]
                # Each controller acts as its own ServiceAccount with its bootstrap role (as on a
                # real cluster): the controller manager's identity alone may not, for instance,
                # create the kube-root-ca.crt ConfigMaps every pod mounts.
                node_flags = ["--use-service-account-credentials=true", "--node-monitor-grace-period=20s"]
            cm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
            cm_kubeconfig.write_text(_kubeconfig(self.server, self.pki, "controller-manager"))
            self._spawn(
                "kube-controller-manager",
                [
                    f"--kubeconfig={cm_kubeconfig}",
                    f"--controllers={','.join(controllers)}",
                    f"--service-account-private-key-file={self.pki.path('sa.key')}",
                    f"--root-ca-file={self.pki.path('ca.crt')}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    "--concurrent-gc-syncs=5",
                    *node_flags,
                    "--v=0",
                ],
            )
        if self.node:
            scheduler_kubeconfig = self.client_kubeconfig("scheduler", common_name="system:kube-scheduler")
            self._spawn(
                "kube-scheduler",
                [f"--kubeconfig={scheduler_kubeconfig}", "--leader-elect=false", "--secure-port=0", "--v=0"],
                binary=self.node.scheduler,
            )

    def client_kubeconfig(self, stem: str, *, common_name: str, organization: str | None = None) -> Path:
        """A kubeconfig with a fresh client certificate (CN = user, O = group) for this apiserver."""
        self.pki.issue(stem, common_name=common_name, organization=organization)
        path = self.workdir / f"{stem}.kubeconfig"
        path.write_text(_kubeconfig(self.server, self.pki, stem))
        return path

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_flags(self) -> list[str]:
        if not self.audit_writes:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            # Status patches with their bodies (no secret is ever in a status): a test that finds
            # a write it did not expect can say what changed.
            "- level: Request\n  verbs: [patch]\n"
            "  resources: [{group: incidentcommander.io, resources: ['*/status']}]\n"
            "- level: Metadata\n  verbs: [create, update, patch, delete]\n"
            "- level: None\n"
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    def restart(self, component: str, *, down_for: float = 0.0, timeout: float = 90.0) -> None:
        """Stop one component (SIGTERM) and start it again with the same flags and port; wait for it."""
        _terminate(self.processes.pop(component))
        time.sleep(down_for)
        self._spawn(component, self.argv[component], binary=self.binaries[component])
        ready: Callable[[], bool] = {
            "etcd": lambda: _http_ok(f"{self.etcd_url}/health"),
            "kube-apiserver": self._apiserver_ready,
        }.get(component, lambda: True)
        self._wait(component, ready, timeout=timeout)

    def pause(self, component: str) -> None:
        """SIGSTOP a component (a hung etcd, say); ``resume`` continues it."""
        os.killpg(self.processes[component].pid, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        os.killpg(self.processes[component].pid, signal.SIGCONT)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (through its v3 JSON gateway); return it.

        Watches resumed from an older resourceVersion then fail with 410 Gone."""
        header = _post_json(f"{self.etcd_url}/v3/kv/range", {"key": "Lw=="})["header"]  # key "/"
        revision = int(header["revision"])
        _post_json(f"{self.etcd_url}/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _spawn(self, component: str, args: list[str], *, binary: Path | None = None) -> None:
        self.argv[component] = list(args)
        self.binaries[component] = binary or self.bin_dir / component
        prefix = [*self.spawn_prefix, *(netns_.nsenter(self.netns) if self.netns else [])]
        log = self.log(component).open("ab")
        self.processes[component] = subprocess.Popen(
            [*prefix, str(self.binaries[component]), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def _wait(self, component: str, ready: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[component]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{component} exited with {process.returncode}:\n{_tail(self.log(component))}"
                )
            if callable(ready) and self.probe(ready):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{component} not ready after {timeout}s:\n{_tail(self.log(component))}")

    def _admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.pki.path("ca.crt"))
        context.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        return context

    def _bind_cluster_role(self, name: str, role: str, *, user: str) -> None:
        body: dict[str, object] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        url = f"{self.server}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        # Where the apiserver listens: inside ``netns`` when one is set (the e2e node).
        self.probe(lambda: bool(_post_json(url, body, context=self._admin_context())))

    def probe(self, check: Callable[[], bool]) -> bool:
        """Run a readiness check where the components are (inside ``netns`` when one is set)."""
        return netns_.run_in(self.netns, check) if self.netns else check()

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=self.pki.path("ca.crt"))
        context.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))
        return _http_ok(f"{self.server}/readyz", context=context)

    def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after 10 s); remove the work directory."""
        for component in reversed(list(self.processes)):
            _terminate(self.processes.pop(component))
        if os.environ.get("IC_KEEP_CONTROLPLANE_DIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


def _post_json(url: str, body: dict[str, object], context: ssl.SSLContext | None = None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 - loopback URL we built
        return dict(json.loads(response.read()))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main() -> int:
    parser = argparse.ArgumentParser(description="Run a local control plane until interrupted.")
    parser.add_argument("--kubeconfig", required=True, help="where to copy the admin kubeconfig")
    parser.add_argument("--ready-file", help="touched once the control plane is ready")
    args = parser.parse_args()
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with LocalControlPlane(bin_dir=build_binaries()) as plane:
        shutil.copy(plane.kubeconfig, args.kubeconfig)
        print(f"control plane ready at {plane.server}; kubeconfig {args.kubeconfig}", flush=True)
        if args.ready_file:
            Path(args.ready_file).touch()
        while not stop:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
