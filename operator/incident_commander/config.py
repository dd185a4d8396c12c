"""The operator's configuration: one typed object built once at startup.

Values come from command-line flags, which fall back to ``IC_*`` environment
variables (so the Helm chart can set them either way), which fall back to the
defaults below. Nothing is read at import time.
"""

from __future__ import annotations

import argparse
import os
import secrets
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
    """kopf's liveness endpoint, probed by the kubelet."""

    log_format: LogFormat = "json"
    """json for log collectors, text for humans."""

    log_level: str = "INFO"
    """Root log level."""

    peering_name: str | None = None
    """kopf peering object for running several replicas; None runs standalone."""

    peering_priority: int = 0
    """This replica's kopf peering priority: the highest runs, the others stand by. kopf pauses
    every replica that sees a peer of equal priority, so replicas must differ; unset, a random
    one is drawn at startup."""

    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    """Origins allowed to call the API from a browser; empty denies all."""

    deletion_timeout: timedelta = timedelta(minutes=5)
    """How long a policy's deletion may wait for AWS cleanup before its resources are left behind."""

    ledger_refresh: timedelta = timedelta(minutes=10)
    """How often each budget re-reads its ledger counter for usage that other replicas recorded.
    5s by default with ``--peering`` (any replica's API may record usage); 10m standalone, where this
    process records every report itself and the read is only a safety net."""

    aws_client_cache: int = DEFAULT_CLIENT_CACHE
    """Live boto3 clients kept across all AwsConnections (least recently used out; each costs
    up to 400 KB). An evicted client is rebuilt on its connection's next call, for a few ms of CPU."""

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
        default=_env(env, "LIVENESS_ENDPOINT", defaults.liveness_endpoint),
        help="kopf liveness endpoint URL, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument(
        "--log-format", choices=["json", "text"], default=_env(env, "LOG_FORMAT", defaults.log_format)
    )
    run.add_argument("--log-level", default=_env(env, "LOG_LEVEL", defaults.log_level))
    run.add_argument(
        "--peering",
        dest="peering_name",
        default=_env(env, "PEERING", "") or None,
        help="kopf peering name for several replicas (needs the peering CRDs); standalone if unset",
    )
    run.add_argument(
        "--peering-priority",
        type=int,
        default=int(_env(env, "PEERING_PRIORITY", "0")) or None,
        help="kopf peering priority of this replica (distinct per replica); random if unset",
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
        help="re-read budget ledgers this often (default 5s with --peering, else 10m)",
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
    return parser


def config_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """Parse flags (and ``IC_*`` variables) into an OperatorConfig."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if args.aws_client_cache < 1:
        parser.error("--aws-client-cache must be at least 1")
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")
    if any(not os.path.isabs(d) for d in args.web_identity_token_dirs):
        parser.error("--web-identity-token-dir takes absolute paths")
    namespaces = tuple(args.namespaces or ())
    return OperatorConfig(
        namespaces=() if args.all_namespaces else namespaces,
        all_namespaces=args.all_namespaces or not namespaces,
        metrics_port=args.metrics_port,
        api_port=args.api_port,
        bind_address=args.bind_address,
        liveness_endpoint=args.liveness_endpoint,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        peering_name=args.peering_name,
        peering_priority=args.peering_priority or secrets.randbelow(1_000_000) + 1,
        cors_origins=tuple(args.cors_origins),
        deletion_timeout=parse_duration(args.deletion_timeout),
        ledger_refresh=parse_duration(args.ledger_refresh or ("5s" if args.peering_name else "10m")),
        aws_client_cache=args.aws_client_cache,
        web_identity_token_dirs=tuple(args.web_identity_token_dirs),
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
    )
