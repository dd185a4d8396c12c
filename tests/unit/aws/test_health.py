from datetime import UTC, datetime, timedelta

from incident_commander.aws.credentials import CredentialsError
from incident_commander.aws.errors import ProbeError
from incident_commander.aws.health import assess_credentials_failure, assess_round
from incident_commander.aws.probes import ServiceProbe
from incident_commander.aws.spec import parse_connection_spec

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = parse_connection_spec({"region": "us-east-1", "services": ["sts", "s3", "kinesis"]})
IDENTITY = {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/ops"}


def ok(service: str, latency: int = 12) -> ServiceProbe:
    response = IDENTITY if service == "sts" else {}
    return ServiceProbe(
        service=service, healthy=True, latency_ms=latency, error=None, attempts=1, response=response
    )


def failed(service: str, reason: str, code: str = "X") -> ServiceProbe:
    error = ProbeError(code=code, reason=reason, message=f"{code} happened", retryable=True)
    return ServiceProbe(service=service, healthy=False, latency_ms=900, error=error, attempts=3)


def conditions(assessment: object) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in assessment.conditions}  # type: ignore[attr-defined]


def round_of(
    probes: dict[str, ServiceProbe], previous: list[dict[str, object]] | None = None, now: datetime = NOW
):  # type: ignore[no-untyped-def]
    return assess_round(
        spec=SPEC,
        identity=probes["sts"],
        probes=probes,
        consecutive_failures={s: (0 if p.healthy else 1) for s, p in probes.items()},
        previous_services=previous,
        now=now,
    )


def test_all_healthy() -> None:
    result = round_of({s: ok(s) for s in SPEC.services})
    assert conditions(result) == {
        "Ready": ("True", "AllServicesHealthy"),
        "CredentialsResolved": ("True", "Resolved"),
        "Degraded": ("False", "AllServicesHealthy"),
    }
    assert result.fields["accountId"] == "123456789012"
    assert [s["name"] for s in result.fields["services"]] == ["sts", "s3", "kinesis"]


def test_one_failing_service_sets_its_reason_on_ready_and_degraded() -> None:
    result = round_of(
        {"sts": ok("sts"), "s3": ok("s3"), "kinesis": failed("kinesis", "Timeout", "ReadTimeoutError")}
    )
    assert conditions(result)["Ready"] == ("False", "Timeout")
    assert conditions(result)["Degraded"] == ("True", "Timeout")
    message = result.conditions[0].message
    assert "1 of 3" in message and "kinesis" in message and "s3 (" not in message
    kinesis = result.fields["services"][2]
    assert kinesis["lastError"] == {"code": "ReadTimeoutError", "message": "ReadTimeoutError happened"}


def test_mixed_reasons_become_services_unhealthy() -> None:
    result = round_of(
        {"sts": ok("sts"), "s3": failed("s3", "Throttled"), "kinesis": failed("kinesis", "Timeout")}
    )
    assert conditions(result)["Ready"] == ("False", "ServicesUnhealthy")


def test_rejected_credentials_win_over_service_reasons() -> None:
    probes = {s: failed(s, "InvalidClientTokenId", "InvalidClientTokenId") for s in SPEC.services}
    result = round_of(probes)
    assert conditions(result) == {
        "Ready": ("False", "InvalidClientTokenId"),
        "CredentialsResolved": ("False", "InvalidClientTokenId"),
        "Degraded": ("Unknown", "CredentialsUnresolved"),
    }


def test_unreachable_sts_leaves_credentials_unknown() -> None:
    probes = {s: failed(s, "EndpointUnreachable") for s in SPEC.services}
    result = round_of(probes)
    assert conditions(result)["CredentialsResolved"] == ("Unknown", "IdentityUnverified")
    assert conditions(result)["Ready"] == ("False", "EndpointUnreachable")


def test_credentials_failure_assessment() -> None:
    result = assess_credentials_failure(CredentialsError("SecretNotFound", "Secret keys does not exist"))
    assert conditions(result)["Ready"] == ("False", "SecretNotFound")
    assert conditions(result)["Degraded"] == ("Unknown", "CredentialsUnresolved")


def test_heartbeat_keeps_probe_time_and_latency_until_it_is_due() -> None:
    first = round_of({s: ok(s) for s in SPEC.services})
    previous = first.fields["services"]
    soon = round_of({s: ok(s, latency=40) for s in SPEC.services}, previous, now=NOW + timedelta(minutes=2))
    assert soon.fields["services"] == previous
    due = round_of({s: ok(s, latency=40) for s in SPEC.services}, previous, now=NOW + timedelta(minutes=5))
    assert due.fields["services"][0]["lastProbeTime"] == "2026-03-01T12:05:00Z"
    assert due.fields["services"][0]["latencyMs"] == 40


def test_a_change_refreshes_the_entry_at_once() -> None:
    first = round_of({s: ok(s) for s in SPEC.services})
    later = round_of(
        {"sts": ok("sts"), "s3": ok("s3"), "kinesis": failed("kinesis", "Timeout")},
        first.fields["services"],
        now=NOW + timedelta(seconds=30),
    )
    assert later.fields["services"][2]["lastProbeTime"] == "2026-03-01T12:00:30Z"
    assert later.fields["services"][0] == first.fields["services"][0]
