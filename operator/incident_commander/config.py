"""The operator's configuration: one typed object built once at startup.

Values come from command-line flags, which fall back to ``IC_*`` environment
variables (so the Helm chart can set them either way), which fall back to the
defaults below. Nothing is read at import time.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE
from incident_commander.durations import parse_duration

LogFormat = Literal["json", "text"]


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    """Settings of one operator process."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty together with ``all_namespaces`` means cluster-wide."""

    all_namespaces: bool = True
    """Watch every namespace (needs cluster-wide RBAC)."""

    metrics_port: int = 9090
    """Port of the Prometheus ``/metrics`` endpoint; 0 disables it."""

    api_port: int = 8443
    """Port of the operator's HTTP API; 0 disables it."""

    bind_address: str = "0.0.0.0"  # noqa: S104 - a pod must listen beyond loopback; tests pass 127.0.0.1
    """Address the metrics and API servers listen on."""

    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    """The liveness endpoint (``/healthz``) the kubelet probes; by default on ``bind_address``, port
    8080. Port 0 picks a free port (the log says which)."""

    log_format: LogFormat = "json"
    """json for log collectors, text for humans."""

    log_level: str = "INFO"
    """Root log level."""

    leader_election: str | None = None
    """The Lease (in ``state_namespace``) through which replicas elect the one that runs the
    controllers (docs/ha.md); None runs standalone: this process leads."""

    leader_timing: tuple[float, float, float] = (15.0, 10.0, 2.0)
    """Lease duration, renew deadline and retry period of leader election, in seconds: a new leader
    takes over at most about lease duration + retry period after the old one stopped renewing."""

    identity: str = "incident-commander"
    """This replica's name in leader election and membership: the pod's name, plus a random suffix."""

    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed to call the API from a browser; empty denies all."""

    deletion_timeout: timedelta = timedelta(minutes=5)
    """How long a policy's deletion may wait for AWS cleanup before its resources are left behind."""

    ledger_refresh: timedelta = timedelta(minutes=10)
    """How often each budget re-reads its ledger counter for usage that other replicas recorded.
    1s by default with leader election (any replica's API may record usage, and every replica must
    see a phase change within 2 s); 10m standalone, where this process records every report itself
    and the read is only a safety net."""

    aws_client_cache: int = DEFAULT_CLIENT_CACHE
    """Live boto3 clients kept across all AwsConnections (least recently used out; each costs
    up to 400 KB). An evicted client is rebuilt on its connection's next call, for a few ms of CPU."""

    api_max_connections: int = 512
    """Connections the API port keeps open at once; beyond, new ones get a 503 and are closed."""

    api_idle_timeout: float = 10.0
    """Seconds a connection may take to send a request head (and a body), and may stay idle
    between requests, before the API closes it."""

    state_namespace: str = "default"
    """The namespace holding the operator's own state: the Secret with the key that seals the
    credential Secrets the API trusts. In a pod, the pod's own namespace."""

    web_identity_token_dirs: tuple[str, ...] = ()
    """Directories of the operator's pod whose token files AwsConnections may name in
    ``credentials.webIdentity``; none by default. Any connection in a watched namespace may use any
    token there, and its STS call goes to that connection's ``endpointUrl``: allow only directories
    holding tokens meant for this (never the Kubernetes service-account token's)."""

    tls_cert_file: str | None = None
    """PEM certificate (chain) for the API port; with ``tls_key_file`` the API speaks HTTPS."""

    tls_key_file: str | None = None
    """PEM private key matching ``tls_cert_file``."""


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    return environ.get(f"IC_{name}", default)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``incident-commander`` command line; defaults come from ``IC_*`` variables."""
    env = os.environ if environ is None else environ
    defaults = OperatorConfig()
    parser = argparse.ArgumentParser(prog="incident-commander", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        default=[n for n in _env(env, "NAMESPACES", "").split(",") if n],
        help="watch this namespace (repeatable; env IC_NAMESPACES, comma-separated)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument(
        "--metrics-port", type=int, default=int(_env(env, "METRICS_PORT", str(defaults.metrics_port)))
    )
    run.add_argument("--api-port", type=int, default=int(_env(env, "API_PORT", str(defaults.api_port))))
    run.add_argument("--bind-address", default=_env(env, "BIND_ADDRESS", defaults.bind_address))
    run.add_argument(
        "--liveness",
        dest="liveness_endpoint",
        default=_env(env, "LIVENESS_ENDPOINT", "") or None,
        help="liveness endpoint URL (default http://<bind-address>:8080/healthz; port 0: any free port)",
    )
    run.add_argument(
        "--log-format", choices=["json", "text"], default=_env(env, "LOG_FORMAT", defaults.log_format)
    )
    run.add_argument("--log-level", default=_env(env, "LOG_LEVEL", defaults.log_level))
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=_env(env, "LEADER_ELECT", "").lower() in ("1", "true", "yes"),
        help="run several replicas: one leads (reconciles), every one serves the API (docs/ha.md)",
    )
    run.add_argument(
        "--leader-election-id",
        default=_env(env, "LEADER_ELECTION_ID", "") or None,
        help="the Lease replicas elect through (implies --leader-elect; default incident-commander); "
        "operators sharding namespaces need one each",
    )
    run.add_argument(
        "--leader-elect-timing",
        default=_env(env, "LEADER_ELECT_TIMING", "15s,10s,2s"),
        help="lease duration, renew deadline and retry period (renew deadline < lease duration)",
    )
    run.add_argument(
        "--peering",
        dest="peering_name",
        default=_env(env, "PEERING", "") or None,
        help="deprecated: the same as --leader-election-id",
    )
    run.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        default=[o for o in _env(env, "CORS_ORIGINS", "").split(",") if o],
    )
    run.add_argument(
        "--deletion-timeout",
        default=_env(env, "DELETION_TIMEOUT", "5m"),
        help="give up deleting a policy's AWS resources after this long (e.g. 5m)",
    )
    run.add_argument(
        "--ledger-refresh",
        default=_env(env, "LEDGER_REFRESH", "") or None,
        help="re-read budget ledgers this often (default 1s with leader election, else 10m)",
    )
    run.add_argument(
        "--aws-client-cache",
        type=int,
        default=int(_env(env, "AWS_CLIENT_CACHE", str(defaults.aws_client_cache))),
        help="live boto3 clients kept across all connections (memory against rebuilds)",
    )
    run.add_argument(
        "--web-identity-token-dir",
        action="append",
        dest="web_identity_token_dirs",
        default=[d for d in _env(env, "WEB_IDENTITY_TOKEN_DIRS", "").split(",") if d],
        help="allow AwsConnection webIdentity token files in this directory "
        "(repeatable; env IC_WEB_IDENTITY_TOKEN_DIRS, comma-separated); none by default",
    )
    run.add_argument(
        "--tls-cert-file",
        default=_env(env, "TLS_CERT_FILE", "") or None,
        help="PEM certificate for the API port (with --tls-key-file: HTTPS)",
    )
    run.add_argument("--tls-key-file", default=_env(env, "TLS_KEY_FILE", "") or None)
    run.add_argument(
        "--api-max-connections",
        type=int,
        default=int(_env(env, "API_MAX_CONNECTIONS", str(defaults.api_max_connections))),
        help="connections the API keeps open at once; beyond, 503 and close",
    )
    run.add_argument(
        "--api-idle-timeout",
        default=_env(env, "API_IDLE_TIMEOUT", "10s"),
        help="close API connections that send no complete request (head or body) for this long",
    )
    run.add_argument(
        "--state-namespace",
        default=_env(env, "STATE_NAMESPACE", "") or default_state_namespace(env),
        help="namespace of the operator's own state (its sealing key); in a pod, its namespace",
    )
    return parser


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def replica_identity(environ: Mapping[str, str]) -> str:
    """The pod's name (unique among live pods) or the host's, plus a random suffix: a restarted
    process is a new member, never mistaken for its predecessor."""
    base = environ.get("K8S_POD_NAME") or socket.gethostname() or "incident-commander"
    return f"{base}-{secrets.token_hex(3)}"


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_state_namespace(environ: Mapping[str, str]) -> str:
    """The pod's namespace (the chart sets K8S_NAMESPACE_NAME; the service account mount has it
    too), else ``default`` for an operator run from a workstation."""
    if environ.get("K8S_NAMESPACE_NAME"):
        return environ["K8S_NAMESPACE_NAME"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as mounted:
            return mounted.read().strip() or "default"
    except OSError:
        return "default"


def config_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """Parse flags (and ``IC_*`` variables) into an OperatorConfig."""
    env = os.environ if environ is None else environ
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.aws_client_cache < 1:
        parser.error("--aws-client-cache must be at least 1")
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")
    if args.api_max_connections < 1:
        parser.error("--api-max-connections must be at least 1")
    try:
        idle_timeout = parse_duration(args.api_idle_timeout).total_seconds()
    except ValueError as invalid:
        parser.error(f"--api-idle-timeout: {invalid}")
    if idle_timeout <= 0:
        parser.error("--api-idle-timeout must be positive")
    if any(not os.path.isabs(d) for d in args.web_identity_token_dirs):
        parser.error("--web-identity-token-dir takes absolute paths")
    namespaces = tuple(args.namespaces or ())
    try:
        timing = tuple(
            parse_duration(part.strip()).total_seconds() for part in args.leader_elect_timing.split(",")
        )
    except ValueError as invalid:
        parser.error(f"--leader-elect-timing: {invalid}")
    if len(timing) != 3 or not 0 < timing[2] < timing[1] < timing[0]:
        parser.error("--leader-elect-timing: three durations, retry period < renew deadline < lease duration")
    election = args.leader_election_id or args.peering_name
    if election is None and args.leader_elect:
        election = "incident-commander"
    return OperatorConfig(
        namespaces=() if args.all_namespaces else namespaces,
        all_namespaces=args.all_namespaces or not namespaces,
        metrics_port=args.metrics_port,
        api_port=args.api_port,
        bind_address=args.bind_address,
        liveness_endpoint=args.liveness_endpoint or f"http://{_host(args.bind_address)}:8080/healthz",
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        leader_election=election,
        leader_timing=(timing[0], timing[1], timing[2]),
        identity=replica_identity(env),
        cors_origins=tuple(args.cors_origins),
        deletion_timeout=parse_duration(args.deletion_timeout),
        ledger_refresh=parse_duration(args.ledger_refresh or ("1s" if election else "10m")),
        aws_client_cache=args.aws_client_cache,
        web_identity_token_dirs=tuple(args.web_identity_token_dirs),
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        api_max_connections=args.api_max_connections,
        api_idle_timeout=idle_timeout,
        state_namespace=args.state_namespace,
    )
