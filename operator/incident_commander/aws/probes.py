"""One cheap, read-only call per service, and a round that probes them all concurrently.

Each service's probe has its own deadline and breaker, so one dead service costs
the others nothing: they finish as fast as their endpoints answer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from incident_commander.aws.clients import ConnectionClients
from incident_commander.aws.errors import ProbeError, classify
from incident_commander.aws.resilience import BreakerState, CircuitBreaker, ProbeFailed, call_with_retries


@dataclass(frozen=True, kw_only=True)
class ProbeContext:
    """Inputs some probes need beyond the client."""

    today: date
    account_id: str | None


ProbeCall = Callable[[Any, ProbeContext], Any]


def _cost_and_usage(client: Any, ctx: ProbeContext) -> Any:
    # Cost Explorer bills every request (USD 0.01): this probe costs money at each probeInterval.
    start = ctx.today - timedelta(days=1)
    return client.get_cost_and_usage(
        TimePeriod={"Start": start.isoformat(), "End": ctx.today.isoformat()},
        Granularity="DAILY",
        Metrics=["UnblendedCost"],
    )


def _budgets(client: Any, ctx: ProbeContext) -> Any:
    if ctx.account_id is None:
        raise ValueError("the budgets probe needs the account id from STS, which is not known yet")
    return client.describe_budgets(AccountId=ctx.account_id, MaxResults=1)


@dataclass(frozen=True, kw_only=True)
class Probe:
    """How one service is probed, and what that needs: docs/awsconnection.md lists the same."""

    call: ProbeCall
    operation: str
    """The AWS API operation the probe makes."""
    iam_action: str | None
    """The IAM action the connection's identity needs for it; None when no policy can deny it."""
    signing_name: str
    """The service name in the SigV4 credential scope (what a proxy or emulator sees)."""


PROBES: Mapping[str, Probe] = {
    "sts": Probe(
        call=lambda c, _: c.get_caller_identity(),
        operation="GetCallerIdentity",
        iam_action=None,
        signing_name="sts",
    ),
    "s3": Probe(
        call=lambda c, _: c.list_buckets(),
        operation="ListBuckets",
        iam_action="s3:ListAllMyBuckets",
        signing_name="s3",
    ),
    "dynamodb": Probe(
        call=lambda c, _: c.list_tables(Limit=1),
        operation="ListTables",
        iam_action="dynamodb:ListTables",
        signing_name="dynamodb",
    ),
    "kinesis": Probe(
        call=lambda c, _: c.list_streams(Limit=1),
        operation="ListStreams",
        iam_action="kinesis:ListStreams",
        signing_name="kinesis",
    ),
    "stepfunctions": Probe(
        call=lambda c, _: c.list_state_machines(maxResults=1),
        operation="ListStateMachines",
        iam_action="states:ListStateMachines",
        signing_name="states",
    ),
    "ce": Probe(
        call=_cost_and_usage, operation="GetCostAndUsage", iam_action="ce:GetCostAndUsage", signing_name="ce"
    ),
    "budgets": Probe(
        call=_budgets, operation="DescribeBudgets", iam_action="budgets:ViewBudget", signing_name="budgets"
    ),
    "inspector2": Probe(
        call=lambda c, _: c.list_findings(maxResults=1),
        operation="ListFindings",
        iam_action="inspector2:ListFindings",
        signing_name="inspector2",
    ),
    "opensearch": Probe(
        call=lambda c, _: c.list_domain_names(),
        operation="ListDomainNames",
        iam_action="es:ListDomainNames",
        signing_name="es",
    ),
    "opensearchserverless": Probe(
        call=lambda c, _: c.list_collections(maxResults=1),
        operation="ListCollections",
        iam_action="aoss:ListCollections",
        signing_name="aoss",
    ),
    "bedrock": Probe(
        call=lambda c, _: c.list_foundation_models(),
        operation="ListFoundationModels",
        iam_action="bedrock:ListFoundationModels",
        signing_name="bedrock",
    ),
    # Read-only and free; Converse would prove more but bills tokens at every probe.
    "bedrock-runtime": Probe(
        call=lambda c, _: c.list_async_invokes(maxResults=1),
        operation="ListAsyncInvokes",
        iam_action="bedrock:ListAsyncInvokes",
        signing_name="bedrock",
    ),
}
"""One probe per service of the AwsConnection CRD's ``services`` enum (a unit test holds them equal)."""


@dataclass(frozen=True, kw_only=True)
class ServiceProbe:
    """Outcome of one service's probe in a round."""

    service: str
    healthy: bool
    latency_ms: int
    error: ProbeError | None
    attempts: int
    skipped: bool = False
    response: Any = None


async def probe_service(
    clients: ConnectionClients,
    service: str,
    *,
    ctx: ProbeContext,
    executor: Executor,
    breaker: CircuitBreaker,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ServiceProbe:
    """Probe one service with retries inside its own deadline; skip it while its breaker is open."""
    spec = clients.spec
    if not breaker.allow(monotonic()):
        return ServiceProbe(
            service=service, healthy=False, latency_ms=0, error=None, attempts=0, skipped=True
        )
    loop = asyncio.get_running_loop()
    client = await loop.run_in_executor(executor, clients.probe_client, service)
    call = functools.partial(PROBES[service].call, client, ctx)
    attempts = 0

    async def attempt() -> Any:
        nonlocal attempts
        attempts += 1
        return await loop.run_in_executor(executor, call)

    half_open_trial = breaker.state is BreakerState.HALF_OPEN
    started = monotonic()
    try:
        response = await asyncio.wait_for(
            call_with_retries(
                attempt,
                max_attempts=1 if half_open_trial else spec.retry.max_attempts,
                base_delay=spec.retry.base_delay,
                max_delay=spec.retry.max_delay,
                sleep=sleep,
            ),
            timeout=spec.probe_timeout(),
        )
    except ProbeFailed as failed:
        breaker.record_failure(monotonic())
        return ServiceProbe(
            service=service,
            healthy=False,
            latency_ms=_ms(monotonic() - started),
            error=failed.error,
            attempts=attempts,
        )
    except TimeoutError as exc:
        breaker.record_failure(monotonic())
        return ServiceProbe(
            service=service,
            healthy=False,
            latency_ms=_ms(monotonic() - started),
            error=classify(exc),
            attempts=attempts,
        )
    breaker.record_success()
    return ServiceProbe(
        service=service,
        healthy=True,
        latency_ms=_ms(monotonic() - started),
        error=None,
        attempts=attempts,
        response=response,
    )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
