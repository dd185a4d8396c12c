"""A real Kubernetes node for the e2e tier, inside a network namespace the test creates.

One network namespace holds everything: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (``LocalControlPlane`` with ``NodeSupport``), containerd with runc and the CNI
bridge plugin (Debian's packages), kubelet and kube-proxy (built from the same pinned module as
the control plane), dnsmasq as the cluster DNS, and whatever the tests add (moto). The namespace
has only ``lo`` (127.0.0.1 and the node's address, a /32) and the pods' bridge; there is no route
out of it, so pods reach only addresses inside it.

Every process runs in the node's own cgroup (``/sys/fs/cgroup/*/ic-e2e-…``; kubelet's
``cgroupRoot`` is the same), which is how teardown finds them all, containers included. What the
node changes on the machine is recorded first in a state file; ``tests/node/cleanup.py`` undoes it,
also after a killed test. Measured facts behind the settings: shared/notes/real-node.md.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.controlplane import netns as netns_
from tests.controlplane.localcluster import (
    SERVICE_CIDR,
    LocalControlPlane,
    NodeSupport,
    _tail,
    free_port,
)
from tests.node import cleanup
from tests.node.images import archive_reference
from tests.support.kube import Kube

REPO = Path(__file__).resolve().parents[2]
NODE_IP = "10.240.0.1"
"""The node's address, on the namespace's ``lo``. Pods reach it through their gateway."""
POD_CIDR = "10.244.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "ic-e2e-node"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
"""The sandbox image name containerd is told to use; built here from ``cmd/pause`` (images.py)."""

GLOBAL_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.netfilter.nf_conntrack_max",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
)
"""Machine-wide values kubelet and kube-proxy may set (kubelet sets the first four on every start):
saved before the node starts and restored at teardown."""

HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/etc/cni/net.d/cni.lock",
    "/var/lib/kube-router",
)
"""Paths written outside the work directory whatever the configuration says (kubelet's device
plugin socket, container log links, shim sockets, buildah's CNI lock): removed at teardown when
this node created them."""


def _cgroup_prefix(cgroup: str) -> list[str]:
    """A command prefix that moves the process into the node's cgroup before it starts."""
    procs = cleanup.CGROUP_ROOT / cleanup.PROCESS_HIERARCHY / cgroup / "runtime" / "cgroup.procs"
    return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]


@dataclass
class NodeCluster:
    """Control plane + one node + cluster DNS in a fresh network namespace. Use as a context manager."""

    controlplane_bin: Path
    node_bin: Path
    name: str = field(default_factory=lambda: f"ic-e2e-{secrets.token_hex(3)}")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ic-e2e-", dir="/tmp")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    netpol_bin: Path | None = None
    """The directory holding kube-router (``build.sh netpol``): enforces NetworkPolicies when given."""
    images: dict[str, Path] = field(default_factory=dict)
    """Image name -> OCI archive, imported into containerd before kubelet starts."""
    plane: LocalControlPlane | None = None
    _dns_stop: threading.Event = field(default_factory=threading.Event)
    _dns_thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.state_path = cleanup.STATE_ROOT / f"{self.name}.json"
        self.netns_path = Path("/run/netns") / self.name
        self.state: dict[str, Any] = {
            "name": self.name,
            "owner_pid": os.getpid(),
            "owner_start": cleanup.process_start_time(os.getpid()),
            "workdir": str(self.workdir),
            "created_paths": [],
            "sysctls": {},
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> NodeCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 180.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything and undo every change; idempotent."""
        self._dns_stop.set()
        if self._dns_thread is not None:
            self._dns_thread.join(timeout=5)
        # kubelet first, so it restarts no container while the rest goes down.
        for component in ("kubelet", "kube-proxy"):
            process = self.processes.get(component)
            if process is not None and process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
        if self.plane is not None:
            self.plane.stop()
        netns_.forget(self.netns_path)
        if self.state_path.exists():
            cleanup.teardown(self.state_path, self.state)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        atexit.unregister(self.stop)

    def _save(self) -> None:
        cleanup.write_state(self.state_path, self.state)

    def _start(self, timeout: float) -> None:
        for leftover in cleanup.cleanup_leftovers():
            print(f"removed a leftover e2e node: {leftover}", file=sys.stderr)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state["created_paths"] = [p for p in HOST_PATHS if not os.path.lexists(p)]
        self.state["sysctls"] = _read_sysctls(GLOBAL_SYSCTLS)
        self._save()
        atexit.register(self.stop)
        self._start_reaper()

        self._make_netns()
        self._make_cgroup()
        self.plane = LocalControlPlane(
            bin_dir=self.controlplane_bin,
            workdir=self.workdir / "controlplane",
            netns=self.netns_path,
            node=NodeSupport(node_ip=NODE_IP, scheduler=self.node_bin / "kube-scheduler"),
            spawn_prefix=_cgroup_prefix(self.name),
        )
        self.plane.workdir.mkdir(parents=True, exist_ok=True)
        self.plane.start(timeout=timeout)
        self._write_tool_wrappers()
        self._start_dns()
        self._start_containerd(timeout)
        for name, archive in self.images.items():
            self.import_image(archive, name)
        self._start_kubelet()
        self._start_kube_proxy()
        self.wait_node_ready(timeout)
        if self.netpol_bin is not None:  # it needs the Node object
            self._start_network_policies(timeout)

    def _start_reaper(self) -> None:
        """A process that outlives this one: if the test dies with its node up, it tears it down."""
        log = (self.workdir / "reaper.log").open("ab")
        subprocess.Popen(
            [sys.executable, "-m", "tests.node.cleanup", "--reap", str(self.state_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    # -- namespace, cgroup -----------------------------------------------------------------------

    def _make_netns(self) -> None:
        netns_dir = Path("/run/netns")
        mounted_before = any(m == str(netns_dir) for m in cleanup.mounts_under([str(netns_dir)]))
        self.state.update(netns=self.name, netns_path=str(self.netns_path))
        self.state["netns_dir_mounted_by_us"] = not mounted_before
        self._save()
        _run(["ip", "netns", "add", self.name])
        ip = ["ip", "-n", self.name]
        _run([*ip, "link", "set", "lo", "up"])
        _run([*ip, "addr", "add", f"{NODE_IP}/32", "dev", "lo"])
        # Per-namespace settings: forwarding between the pods' bridge and local services.
        for name, value in (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1")):
            _run([*netns_.nsenter(self.netns_path), "sysctl", "-q", "-w", f"{name}={value}"])

    def _make_cgroup(self) -> None:
        self.state["cgroup"] = self.name
        self._save()
        for hierarchy in cleanup.hierarchies():
            top = hierarchy / self.name
            top.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":  # a new cpuset cgroup starts with no CPUs and no memory nodes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (top / knob).write_text((hierarchy / knob).read_text())
        runtime = cleanup.CGROUP_ROOT / cleanup.PROCESS_HIERARCHY / self.name / "runtime"
        runtime.mkdir(exist_ok=True)

    # -- processes -------------------------------------------------------------------------------

    def spawn(self, component: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        """Start ``argv`` inside the namespace and the node's cgroup, logging to ``log(component)``."""
        with self.log(component).open("ab") as log:
            self.processes[component] = subprocess.Popen(
                [*_cgroup_prefix(self.name), *netns_.nsenter(self.netns_path), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )

    def log(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def wait(self, component: str, ready: Any, *, timeout: float, what: str = "ready") -> None:
        """Until ``ready()``; fail at once, with its log, when any component of the node exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):  # refused, reset, timed out: not ready yet
                if ready():
                    return
            time.sleep(0.25)
        raise TimeoutError(f"{component} not {what} after {timeout}s:\n{_tail(self.log(component))}")

    def check_alive(self) -> None:
        """Raise, with its log tail, if a component (control plane included) has exited."""
        logs = {name: self.log(name) for name in self.processes}
        processes = dict(self.processes)
        if self.plane is not None:
            processes.update(self.plane.processes)
            logs.update({name: self.plane.log(name) for name in self.plane.processes})
        for name, process in processes.items():
            if process.poll() is not None and name != "moto":
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(logs[name])}")

    def in_netns(self, function: Any) -> Any:
        """Run ``function`` on a thread inside the node's network namespace (for sockets)."""
        return netns_.run_in(self.netns_path, function)

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (not in the node's cgroup: it ends before we do)."""
        result = subprocess.run(
            [*netns_.nsenter(self.netns_path), *argv], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        return result

    # -- kubectl / helm ----------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None
        return self.plane.kubeconfig

    def _write_tool_wrappers(self) -> None:
        """kubectl and helm that run inside the namespace (the apiserver is only reachable there)."""
        wrappers = self.workdir / "bin"
        wrappers.mkdir(exist_ok=True)
        for tool in ("kubectl", "helm"):
            script = wrappers / tool
            script.write_text(
                f'#!/bin/sh\nexec nsenter --net={self.netns_path} {self.controlplane_bin / tool} "$@"\n'
            )
            script.chmod(0o755)
        self.kube = Kube(kubeconfig=self.kubeconfig, bin_dir=wrappers)

    # -- cluster DNS -------------------------------------------------------------------------------

    def _start_dns(self) -> None:
        """dnsmasq answering only for Services (``NAME.NS.svc[.cluster.local]``), with no upstream:
        names outside the cluster get no answer, so nothing resolves to an address outside."""
        hosts = self.workdir / "dns"
        hosts.mkdir()
        self._sync_dns_once(hosts)
        self.spawn(
            "dnsmasq",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--user=root",
                "--pid-file",
                f"--listen-address={NODE_IP}",
                "--bind-interfaces",
                f"--local=/{CLUSTER_DOMAIN}/",
                f"--hostsdir={hosts}",
                "--log-facility=-",
            ],
        )
        # The apiserver creates the kubernetes Service a moment after it is ready: keep syncing.
        self._dns_thread = threading.Thread(
            target=self._dns_loop, args=(hosts,), name="dns-sync", daemon=True
        )
        self._dns_thread.start()
        self.wait(
            "dnsmasq",
            lambda: self.resolve(f"kubernetes.default.svc.{CLUSTER_DOMAIN}") is not None,
            timeout=60,
        )

    def resolve(self, name: str) -> str | None:
        """Ask the cluster DNS for ``name`` from inside the namespace."""
        out = subprocess.run(
            [*netns_.nsenter(self.netns_path), sys.executable, "-c", _DNS_QUERY, NODE_IP, name],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or None

    def _services(self) -> list[dict[str, Any]]:
        assert self.plane is not None
        plane = self.plane

        def fetch() -> list[dict[str, Any]]:
            context = ssl.create_default_context(cafile=plane.pki.path("ca.crt"))
            context.load_cert_chain(plane.pki.path("admin.crt"), plane.pki.path("admin.key"))
            url = f"{plane.server}/api/v1/services"
            with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 - our apiserver
                return list(json.loads(response.read())["items"])

        return list(self.in_netns(fetch))

    def _sync_dns_once(self, hosts: Path) -> None:
        lines = []
        for service in self._services():
            ip = (service.get("spec") or {}).get("clusterIP")
            if not ip or ip == "None":
                continue
            meta = service["metadata"]
            short = f"{meta['name']}.{meta['namespace']}.svc"
            lines.append(f"{ip} {short}.{CLUSTER_DOMAIN} {short}")
        text = "\n".join(sorted(lines)) + "\n"
        target = hosts / "services"
        if not target.exists() or target.read_text() != text:
            tmp = self.workdir / "services.tmp"
            tmp.write_text(text)
            tmp.replace(target)

    def _dns_loop(self, hosts: Path) -> None:
        while not self._dns_stop.wait(1.0):
            with contextlib.suppress(Exception):
                self._sync_dns_once(hosts)

    # -- containerd --------------------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def _start_containerd(self, timeout: float) -> None:
        base = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        (cni_conf / "10-ic-e2e.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "ic-e2e",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni" / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        config = base / "config.toml"
        base.mkdir(exist_ok=True)
        config.write_text(
            f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{base / "containerd.ttrpc.sock"}"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower a container's oom_score_adj below ours.
  restrict_oom_score_adj = true
  # Pod network namespaces under the work directory, not /run/netns, so teardown finds them.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"""
        )
        self.spawn("containerd", ["containerd", f"--config={config}"])
        self.wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, timeout=timeout)

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the k8s.io namespace (the CRI's images)."""
        result = subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def import_image(self, archive: Path, name: str) -> None:
        """Import an OCI archive into containerd and name it ``name`` (kubelet never pulls here).

        ``name`` is what the CRI looks up: a fully qualified reference (``incident-commander:e2e``
        in a pod spec is ``docker.io/library/incident-commander:e2e``)."""
        reference = archive_reference(archive)
        repository, _, _tag = reference.rpartition(":")
        self.ctr("images", "import", f"--base-name={repository or reference}", str(archive))
        if reference != name:
            self.ctr("images", "tag", "--force", reference, name)

    # -- kubelet, kube-proxy -----------------------------------------------------------------------

    def _start_kubelet(self) -> None:
        assert self.plane is not None
        kubeconfig = self.plane.client_kubeconfig(
            "kubelet", common_name=f"system:node:{NODE_NAME}", organization="system:nodes"
        )
        root = self.workdir / "kubelet"
        root.mkdir()
        config = self.workdir / "kubelet-config.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": NODE_IP,
                    "port": free_port(),
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": free_port(),
                    # Test only: the apiserver (logs, exec) reaches the kubelet without credentials.
                    "authentication": {
                        "anonymous": {"enabled": True},
                        "webhook": {"enabled": False},
                        "x509": {"clientCAFile": self.plane.pki.path("ca.crt")},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{self.name}",
                    "cgroupsPerQOS": True,
                    "enforceNodeAllocatable": ["pods"],
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "protectKernelDefaults": False,
                    "clusterDNS": [NODE_IP],
                    "clusterDomain": CLUSTER_DOMAIN,
                    "resolvConf": "",
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    "podLogsDir": str(self.workdir / "pod-logs"),
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                        "imagefs.available": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    "maxPods": 30,
                    "nodeStatusUpdateFrequency": "5s",
                    "syncFrequency": "10s",
                    "rotateCertificates": False,
                    "serverTLSBootstrap": False,
                }
            )
        )
        self.spawn(
            "kubelet",
            [
                str(self.node_bin / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        assert self.plane is not None
        kubeconfig = self.plane.client_kubeconfig("kube-proxy", common_name="system:kube-proxy")
        config = self.workdir / "kube-proxy-config.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(kubeconfig)},
                    "hostnameOverride": NODE_NAME,
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "healthzBindAddress": f"127.0.0.1:{free_port()}",
                    "metricsBindAddress": f"127.0.0.1:{free_port()}",
                    # Zero: leave the machine-wide conntrack settings alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "iptables": {"localhostNodePorts": False},
                    "nodePortAddresses": [f"{NODE_IP}/32"],
                }
            )
        )
        self.spawn("kube-proxy", [str(self.node_bin / "kube-proxy"), f"--config={config}", "--v=1"])

    def _start_network_policies(self, timeout: float) -> None:
        """kube-router's firewall controller alone (no routing, no service proxy): it turns the
        cluster's NetworkPolicies into iptables rules and ipsets in the node's namespace. The
        bridge plugin enforces none, as on a cluster whose CNI has no policy support."""
        assert self.plane is not None and self.netpol_bin is not None
        # Test infrastructure, not what is under test: an admin identity keeps it simple.
        kubeconfig = self.plane.client_kubeconfig(
            "kube-router", common_name="kube-router", organization="system:masters"
        )
        self.spawn(
            "kube-router",
            [
                str(self.netpol_bin / "kube-router"),
                f"--kubeconfig={kubeconfig}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                f"--hostname-override={NODE_NAME}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--health-port=0",
                "--metrics-port=0",
                "--iptables-sync-period=30s",
                "--v=1",
            ],
        )
        self.wait(
            "kube-router",
            lambda: self.run("iptables", "-S", "KUBE-ROUTER-FORWARD", check=False).returncode == 0,
            timeout=timeout,
            what="enforcing (no KUBE-ROUTER-FORWARD chain)",
        )

    def wait_node_ready(self, timeout: float) -> None:
        """Until the node is Ready and carries no taint (the node lifecycle controller lifts them)."""

        def ready() -> bool:
            result = self.kube.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if result.returncode != 0:
                return False
            node = json.loads(result.stdout)
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            return conditions.get("Ready") == "True" and not node["spec"].get("taints")

        self.wait("kubelet", ready, timeout=timeout, what="Ready and untainted")


_DNS_QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
query = struct.pack(">HHHHHH", 0x1c2e, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
try:
    sock.sendto(query, (server, 53))
    reply = sock.recv(512)
except OSError:
    sys.exit(0)
answers = struct.unpack(">H", reply[6:8])[0]
if answers and reply[3] & 0x0F == 0:
    print(socket.inet_ntoa(reply[-4:]))
"""
"""A one-shot A query (stdlib only) run inside the namespace: is dnsmasq answering?"""


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


def _read_sysctls(names: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name.replace(".", "/")).read_text().strip()
    return values
