"""From a probe round to an AwsConnection's conditions and status fields. Pure.

Conditions:
- CredentialsResolved: True once STS GetCallerIdentity accepted the credentials;
  False with the reason (SecretNotFound, KeyMissing, AssumeRoleFailed,
  InvalidClientTokenId, SignatureDoesNotMatch, ExpiredToken, NoCredentials, ...);
  Unknown while STS cannot be reached to check them.
- Ready: True when the credentials resolved and every listed service is healthy.
  Otherwise False, with the credentials' reason, or the failing services'
  common reason (EndpointUnreachable, Timeout, Throttled, AccessDenied, ...),
  or ServicesUnhealthy when they fail for different reasons.
- Degraded: True when the credentials resolved but at least one listed service
  is unhealthy; Unknown while the credentials are unresolved.

Heartbeat: a service entry's ``lastProbeTime`` and ``latencyMs`` are refreshed
only when something else about the service changed, or at most every
``heartbeat`` (5 minutes by default), so a healthy connection costs one status
write per heartbeat, not one per probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from incident_commander.aws.credentials import CredentialsError
from incident_commander.aws.probes import ServiceProbe
from incident_commander.aws.spec import ConnectionSpec
from incident_commander.conditions import Condition
from incident_commander.status import Assessment
from incident_commander.timestamps import kubernetes_time, parse_time

DEFAULT_HEARTBEAT = timedelta(minutes=5)


def assess_credentials_failure(error: CredentialsError) -> Assessment:
    """The Secret or the role could not even be turned into credentials."""
    return Assessment(
        conditions=[
            Condition(type="Ready", status="False", reason=error.reason, message=error.message),
            Condition(type="CredentialsResolved", status="False", reason=error.reason, message=error.message),
            Condition(
                type="Degraded",
                status="Unknown",
                reason="CredentialsUnresolved",
                message="services are not probed until the credentials resolve",
            ),
        ]
    )


def assess_round(
    *,
    spec: ConnectionSpec,
    identity: ServiceProbe,
    probes: Mapping[str, ServiceProbe],
    consecutive_failures: Mapping[str, int],
    previous_services: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    heartbeat: timedelta = DEFAULT_HEARTBEAT,
) -> Assessment:
    """Conditions and fields after a round of probes (``identity`` is STS GetCallerIdentity)."""
    previous = {str(s.get("name")): s for s in previous_services or []}
    services = [
        _service_entry(probes[name], consecutive_failures.get(name, 0), previous.get(name), now, heartbeat)
        for name in spec.services
    ]
    fields: dict[str, Any] = {"services": services}

    identity_error = identity.error
    if identity.healthy:
        caller = identity.response or {}
        fields["accountId"] = caller.get("Account")
        fields["arn"] = caller.get("Arn")
        credentials = Condition(
            type="CredentialsResolved",
            status="True",
            reason="Resolved",
            message=f"credentials from {spec.credential_source} resolve to {caller.get('Arn')}",
        )
    elif identity_error is not None and identity_error.is_credentials:
        message = f"STS rejected the credentials from {spec.credential_source}: {identity_error.code}"
        return Assessment(
            conditions=[
                Condition(type="Ready", status="False", reason=identity_error.reason, message=message),
                Condition(
                    type="CredentialsResolved", status="False", reason=identity_error.reason, message=message
                ),
                Condition(
                    type="Degraded",
                    status="Unknown",
                    reason="CredentialsUnresolved",
                    message="services cannot be trusted until the credentials resolve",
                ),
            ],
            fields=fields,
        )
    else:
        why = f"{identity_error.reason}: {identity_error.message}" if identity_error else "breaker open"
        credentials = Condition(
            type="CredentialsResolved",
            status="Unknown",
            reason="IdentityUnverified",
            message=f"STS GetCallerIdentity did not answer ({why})",
        )

    unhealthy = [p for p in (probes[name] for name in spec.services) if not p.healthy]
    if not unhealthy and credentials.status == "True":
        message = f"{len(spec.services)} service(s) healthy: {', '.join(spec.services)}"
        return Assessment(
            conditions=[
                Condition(type="Ready", status="True", reason="AllServicesHealthy", message=message),
                credentials,
                Condition(type="Degraded", status="False", reason="AllServicesHealthy", message=message),
            ],
            fields=fields,
        )
    if not unhealthy:
        return Assessment(
            conditions=[
                Condition(
                    type="Ready", status="False", reason=credentials.reason, message=credentials.message
                ),
                credentials,
                Condition(
                    type="Degraded", status="Unknown", reason=credentials.reason, message=credentials.message
                ),
            ],
            fields=fields,
        )

    reasons = {_reason(p, previous.get(p.service)) for p in unhealthy}
    reason = reasons.pop() if len(reasons) == 1 else "ServicesUnhealthy"
    details = "; ".join(_describe(p, previous.get(p.service)) for p in unhealthy)
    message = f"{len(unhealthy)} of {len(spec.services)} service(s) unhealthy: {details}"
    return Assessment(
        conditions=[
            Condition(type="Ready", status="False", reason=reason, message=message),
            credentials,
            Condition(type="Degraded", status="True", reason=reason, message=message),
        ],
        fields=fields,
    )


def _reason(probe: ServiceProbe, previous: Mapping[str, Any] | None) -> str:
    if probe.error is not None:
        return probe.error.reason
    if probe.skipped:
        return "CircuitOpen"
    return "Unhealthy"


def _describe(probe: ServiceProbe, previous: Mapping[str, Any] | None) -> str:
    if probe.skipped:
        last = (previous or {}).get("lastError") or {}
        return f"{probe.service} (circuit open after {last.get('code', 'failures')})"
    assert probe.error is not None
    return f"{probe.service} ({probe.error.reason}: {probe.error.message[:200]})"


def _service_entry(
    probe: ServiceProbe,
    consecutive_failures: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
    heartbeat: timedelta,
) -> dict[str, Any]:
    if probe.skipped and previous is not None:
        return dict(previous)
    entry: dict[str, Any] = {
        "name": probe.service,
        "healthy": probe.healthy,
        "consecutiveFailures": consecutive_failures,
    }
    if probe.error is not None:
        entry["lastError"] = {"code": probe.error.code, "message": probe.error.message[:512]}
    elif probe.skipped:
        entry["lastError"] = {"code": "CircuitOpen", "message": "probes paused after repeated failures"}
    material = {k: v for k, v in entry.items()}
    if (
        previous is not None
        and {k: previous.get(k) for k in material} == material
        and _fresh(previous, now, heartbeat)
    ):
        entry["latencyMs"] = previous.get("latencyMs", probe.latency_ms)
        entry["lastProbeTime"] = previous["lastProbeTime"]
    else:
        entry["latencyMs"] = probe.latency_ms
        entry["lastProbeTime"] = kubernetes_time(now)
    return entry


def _fresh(previous: Mapping[str, Any], now: datetime, heartbeat: timedelta) -> bool:
    stamp = previous.get("lastProbeTime")
    if not stamp:
        return False
    written = parse_time(str(stamp))
    return now - written < heartbeat
