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


PROBES: Mapping[str, ProbeCall] = {
    "sts": lambda c, _: c.get_caller_identity(),
    "s3": lambda c, _: c.list_buckets(),
    "dynamodb": lambda c, _: c.list_tables(Limit=1),
    "kinesis": lambda c, _: c.list_streams(Limit=1),
    "stepfunctions": lambda c, _: c.list_state_machines(maxResults=1),
    "ce": _cost_and_usage,
    "budgets": _budgets,
    "inspector2": lambda c, _: c.list_findings(maxResults=1),
    "opensearch": lambda c, _: c.list_domain_names(),
    "opensearchserverless": lambda c, _: c.list_collections(maxResults=1),
    "bedrock": lambda c, _: c.list_foundation_models(),
    "bedrock-runtime": lambda c, _: c.list_async_invokes(maxResults=1),
}


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
    call = functools.partial(PROBES[service], client, ctx)
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
