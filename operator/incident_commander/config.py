"""The operator's configuration: one typed object built once at startup.

Values come from command-line flags, which fall back to ``IC_*`` environment
variables (so the Helm chart can set them either way), which fall back to the
defaults below. Nothing is read at import time.

A flag and its variable go through the same parser (the ``parse_*`` functions
below), so ``--metrics-port=abc`` and ``IC_METRICS_PORT=abc`` are refused alike:
one line on stderr naming the flag or the variable, exit code 2, no traceback.
A bad variable is refused even when its flag overrides it, and even with
``--help``: a misconfigured Deployment should fail where it is read, not later.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE
from incident_commander.durations import InvalidDuration, parse_duration

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PROG = "incident-commander"


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

    incident_sweep_interval: timedelta = timedelta(seconds=15)
    """How often the leader sweeps every policy's incidents: publishes events a crash left in an
    outbox, settles proposals with their state machine, counts open incidents (docs/incidents.md)."""

    aws_client_cache: int = DEFAULT_CLIENT_CACHE
    """Live boto3 clients kept across all AwsConnections (least recently used out; each costs
    up to 400 KB). An evicted client is rebuilt on its connection's next call, for a few ms of CPU."""

    web_identity_token_dirs: tuple[str, ...] = ()
    """Directories of the operator's pod whose token files AwsConnections may name in
    ``credentials.webIdentity``; none by default. Any connection in a watched namespace may use any
    token there, and its STS call goes to that connection's ``endpointUrl``: allow only directories
    holding tokens meant for this (never the Kubernetes service-account token's)."""

    api_max_connections: int = 512
    """Connections the API port keeps open at once; beyond, new ones get a 503 and are closed."""

    api_idle_timeout: float = 10.0
    """Seconds a connection may take to send a request head (and a body), and may stay idle
    between requests, before the API closes it."""

    state_namespace: str = "default"
    """The namespace holding the operator's own state: the Secret with the key that seals the
    credential Secrets the API trusts, and the Leases of leader election. In a pod, the pod's own
    namespace."""

    tls_cert_file: str | None = None
    """PEM certificate (chain) for the API port; with ``tls_key_file`` the API speaks HTTPS."""

    tls_key_file: str | None = None
    """PEM private key matching ``tls_cert_file``."""


# --- Parsers: one per kind of value, shared by a flag and its IC_* variable. -----------------
# Each raises argparse.ArgumentTypeError, whose message argparse prints after the flag's name and
# config_from_args prints after the variable's.

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_port(text: str) -> int:
    """A TCP port, or 0 for "off"."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 turns it off)")
    return value


def parse_int(text: str) -> int:
    """Any integer (peering priorities may be negative)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def parse_log_format(text: str) -> LogFormat:
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log format (choose from json, text)")
    return text


def parse_log_level(text: str) -> str:
    """A standard logging level name, in any case."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (choose from {', '.join(LOG_LEVELS)})")
    return level


def parse_duration_arg(text: str) -> timedelta:
    """A duration such as 30s or 5m (0s allowed)."""
    try:
        return parse_duration(text)
    except InvalidDuration as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_positive_duration(text: str) -> timedelta:
    """A duration longer than 0s (an interval: 0 would spin)."""
    value = parse_duration_arg(text)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s")
    return value


def parse_namespace(text: str) -> str:
    """A namespace name (an RFC 1123 label)."""
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a namespace name (lowercase RFC 1123 label)")
    return text


def parse_object_name(text: str) -> str:
    """The name of an object such as a Lease (an RFC 1123 subdomain)."""
    if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an object name (lowercase RFC 1123 subdomain)")
    return text


def parse_ip_address(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def parse_origin(text: str) -> str:
    """A browser origin: scheme, host and optional port, nothing else."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as https://console.example.com")
    return text


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def parse_absolute_dir(text: str) -> str:
    if not os.path.isabs(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute path")
    return text


def parse_leader_timing(text: str) -> tuple[float, float, float]:
    """Lease duration, renew deadline and retry period: three durations, each shorter than the one before."""
    try:
        timing = tuple(parse_duration(part.strip()).total_seconds() for part in text.split(","))
    except InvalidDuration as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(timing) != 3 or not 0 < timing[2] < timing[1] < timing[0]:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not three durations such as 15s,10s,2s"
            " (retry period < renew deadline < lease duration)"
        )
    return (timing[0], timing[1], timing[2])


def parse_liveness(text: str) -> str:
    """The liveness endpoint: an http URL with host and port (0: any free port)."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL such as http://0.0.0.0:8080/healthz")
    return text


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class Variable:
    """An ``IC_*`` variable: the flag it stands for, and how its value is read."""

    name: str
    flag: str
    parse: Callable[[str], Any]
    is_list: bool = False
    """Comma-separated list (each item parsed), as the repeatable flag."""


VARIABLES = (
    Variable("IC_NAMESPACES", "--namespace", parse_namespace, is_list=True),
    Variable("IC_METRICS_PORT", "--metrics-port", parse_port),
    Variable("IC_API_PORT", "--api-port", parse_port),
    Variable("IC_BIND_ADDRESS", "--bind-address", parse_ip_address),
    Variable("IC_LIVENESS_ENDPOINT", "--liveness", parse_liveness),
    Variable("IC_LOG_FORMAT", "--log-format", parse_log_format),
    Variable("IC_LOG_LEVEL", "--log-level", parse_log_level),
    Variable("IC_LEADER_ELECT", "--leader-elect", parse_bool),
    Variable("IC_LEADER_ELECTION_ID", "--leader-election-id", parse_object_name),
    Variable("IC_LEADER_ELECT_TIMING", "--leader-elect-timing", parse_leader_timing),
    Variable("IC_PEERING", "--peering", parse_object_name),
    Variable("IC_STATE_NAMESPACE", "--state-namespace", parse_namespace),
    Variable("IC_CORS_ORIGINS", "--cors-origin", parse_origin, is_list=True),
    Variable("IC_DELETION_TIMEOUT", "--deletion-timeout", parse_duration_arg),
    Variable("IC_LEDGER_REFRESH", "--ledger-refresh", parse_positive_duration),
    Variable("IC_INCIDENT_SWEEP_INTERVAL", "--incident-sweep-interval", parse_positive_duration),
    Variable("IC_AWS_CLIENT_CACHE", "--aws-client-cache", parse_positive_int),
    Variable("IC_WEB_IDENTITY_TOKEN_DIRS", "--web-identity-token-dir", parse_absolute_dir, is_list=True),
    Variable("IC_API_MAX_CONNECTIONS", "--api-max-connections", parse_positive_int),
    Variable("IC_API_IDLE_TIMEOUT", "--api-idle-timeout", parse_positive_duration),
    Variable("IC_TLS_CERT_FILE", "--tls-cert-file", _text),
    Variable("IC_TLS_KEY_FILE", "--tls-key-file", _text),
)
"""Every variable the operator reads. An empty variable counts as unset."""


class _Repeatable(argparse.Action):
    """A repeatable flag whose values replace its default (the environment's list) rather than
    adding to it, so ``-n a`` with ``IC_NAMESPACES=x,y`` watches only ``a``: flags win."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is self.default or current is None else list(current)
        setattr(namespace, self.dest, [*items, values])


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line naming the flag or variable."""


def environment_defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    """The set ``IC_*`` variables, parsed, keyed by flag; ConfigError for the first bad one."""
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        raw = environ.get(variable.name, "")
        if not raw:
            continue
        try:
            if variable.is_list:
                values[variable.flag] = [
                    variable.parse(item.strip()) for item in raw.split(",") if item.strip()
                ]
            else:
                values[variable.flag] = variable.parse(raw)
        except argparse.ArgumentTypeError as error:
            raise ConfigError(f"environment variable {variable.name}: {error}") from None
    return values


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``incident-commander`` command line; defaults come from ``IC_*`` variables.

    Raises ConfigError when a variable is set to something its flag would refuse."""
    env = environment_defaults(os.environ if environ is None else environ)
    defaults = OperatorConfig()

    def default(flag: str, fallback: Any) -> Any:
        return env.get(flag, fallback)

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action=_Repeatable,
        dest="namespaces",
        type=parse_namespace,
        default=default("--namespace", []),
        help="watch this namespace (repeatable; env IC_NAMESPACES, comma-separated)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument(
        "--metrics-port",
        type=parse_port,
        default=default("--metrics-port", defaults.metrics_port),
        help="Prometheus /metrics port, 0 for none (env IC_METRICS_PORT)",
    )
    run.add_argument(
        "--api-port",
        type=parse_port,
        default=default("--api-port", defaults.api_port),
        help="API port, 0 for none (env IC_API_PORT)",
    )
    run.add_argument(
        "--bind-address",
        type=parse_ip_address,
        default=default("--bind-address", defaults.bind_address),
        help="address of the metrics and API servers (env IC_BIND_ADDRESS)",
    )
    run.add_argument(
        "--liveness",
        dest="liveness_endpoint",
        type=parse_liveness,
        default=default("--liveness", None),
        help="liveness endpoint URL (default http://<bind-address>:8080/healthz; port 0: any free port;"
        " env IC_LIVENESS_ENDPOINT)",
    )
    run.add_argument(
        "--log-format",
        type=parse_log_format,
        default=default("--log-format", defaults.log_format),
        help="json or text (env IC_LOG_FORMAT)",
    )
    run.add_argument(
        "--log-level",
        type=parse_log_level,
        default=default("--log-level", defaults.log_level),
        help=f"one of {', '.join(LOG_LEVELS)} (env IC_LOG_LEVEL)",
    )
    run.add_argument(
        "--leader-elect",
        type=parse_bool,
        nargs="?",
        const=True,
        default=default("--leader-elect", False),
        help="several replicas: one leads (reconciles), every one serves the API (docs/ha.md;"
        " env IC_LEADER_ELECT)",
    )
    run.add_argument(
        "--leader-election-id",
        type=parse_object_name,
        default=default("--leader-election-id", None),
        help="the Lease replicas elect through (implies --leader-elect; default incident-commander);"
        " operators sharding namespaces need one each (env IC_LEADER_ELECTION_ID)",
    )
    run.add_argument(
        "--leader-elect-timing",
        type=parse_leader_timing,
        default=default("--leader-elect-timing", (15.0, 10.0, 2.0)),
        help="lease duration, renew deadline and retry period, e.g. 15s,10s,2s (env IC_LEADER_ELECT_TIMING)",
    )
    run.add_argument(
        "--peering",
        dest="peering_name",
        type=parse_object_name,
        default=default("--peering", None),
        help="deprecated: the same as --leader-election-id (env IC_PEERING)",
    )
    run.add_argument(
        "--state-namespace",
        type=parse_namespace,
        default=default("--state-namespace", None),
        help="namespace of the operator's own state (its sealing key, its Leases); in a pod, its own"
        " (env IC_STATE_NAMESPACE)",
    )
    run.add_argument(
        "--cors-origin",
        action=_Repeatable,
        dest="cors_origins",
        type=parse_origin,
        default=default("--cors-origin", []),
        help="origin allowed to call the API from a browser"
        " (repeatable; env IC_CORS_ORIGINS, comma-separated)",
    )
    run.add_argument(
        "--deletion-timeout",
        type=parse_duration_arg,
        default=default("--deletion-timeout", defaults.deletion_timeout),
        help="give up deleting a policy's AWS resources after this long, e.g. 5m (env IC_DELETION_TIMEOUT)",
    )
    run.add_argument(
        "--ledger-refresh",
        type=parse_positive_duration,
        default=default("--ledger-refresh", None),
        help="re-read budget ledgers this often (default 1s with leader election, else 10m;"
        " env IC_LEDGER_REFRESH)",
    )
    run.add_argument(
        "--incident-sweep-interval",
        type=parse_positive_duration,
        default=default("--incident-sweep-interval", defaults.incident_sweep_interval),
        help="sweep incidents (unpublished events, unsettled proposals, open counts) this often, e.g. 15s"
        " (env IC_INCIDENT_SWEEP_INTERVAL)",
    )
    run.add_argument(
        "--aws-client-cache",
        type=parse_positive_int,
        default=default("--aws-client-cache", defaults.aws_client_cache),
        help="live boto3 clients kept across all connections, memory against rebuilds"
        " (env IC_AWS_CLIENT_CACHE)",
    )
    run.add_argument(
        "--web-identity-token-dir",
        action=_Repeatable,
        dest="web_identity_token_dirs",
        type=parse_absolute_dir,
        default=default("--web-identity-token-dir", []),
        help="allow AwsConnection webIdentity token files in this directory (repeatable;"
        " env IC_WEB_IDENTITY_TOKEN_DIRS, comma-separated); none by default",
    )
    run.add_argument(
        "--api-max-connections",
        type=parse_positive_int,
        default=default("--api-max-connections", defaults.api_max_connections),
        help="connections the API keeps open at once; beyond, 503 and close (env IC_API_MAX_CONNECTIONS)",
    )
    run.add_argument(
        "--api-idle-timeout",
        type=parse_positive_duration,
        default=default("--api-idle-timeout", timedelta(seconds=defaults.api_idle_timeout)),
        help="close API connections that send no complete request (head or body) for this long"
        " (env IC_API_IDLE_TIMEOUT)",
    )
    run.add_argument(
        "--tls-cert-file",
        default=default("--tls-cert-file", None),
        help="PEM certificate for the API port (with --tls-key-file: HTTPS; env IC_TLS_CERT_FILE)",
    )
    run.add_argument(
        "--tls-key-file",
        default=default("--tls-key-file", None),
        help="PEM private key for the API port (env IC_TLS_KEY_FILE)",
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


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2, as argparse does for a bad flag."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def config_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorConfig:
    """Parse flags (and ``IC_*`` variables) into an OperatorConfig; exit 2 on a bad value."""
    try:
        parser = build_parser(environ)
    except ConfigError as error:
        _fail(str(error))
    args = parser.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together (env IC_TLS_CERT_FILE, IC_TLS_KEY_FILE)")
    namespaces = tuple(args.namespaces or ())
    election = args.leader_election_id or args.peering_name
    if election is None and args.leader_elect:
        election = "incident-commander"
    env = os.environ if environ is None else environ
    return OperatorConfig(
        namespaces=() if args.all_namespaces else namespaces,
        all_namespaces=args.all_namespaces or not namespaces,
        metrics_port=args.metrics_port,
        api_port=args.api_port,
        bind_address=args.bind_address,
        liveness_endpoint=args.liveness_endpoint or f"http://{_host(args.bind_address)}:8080/healthz",
        log_format=args.log_format,
        log_level=args.log_level,
        leader_election=election,
        leader_timing=args.leader_elect_timing,
        identity=replica_identity(env),
        cors_origins=tuple(args.cors_origins),
        deletion_timeout=args.deletion_timeout,
        ledger_refresh=args.ledger_refresh or timedelta(seconds=1 if election else 600),
        incident_sweep_interval=args.incident_sweep_interval,
        aws_client_cache=args.aws_client_cache,
        web_identity_token_dirs=tuple(args.web_identity_token_dirs),
        api_max_connections=args.api_max_connections,
        api_idle_timeout=args.api_idle_timeout.total_seconds(),
        state_namespace=args.state_namespace or default_state_namespace(env),
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
    )
