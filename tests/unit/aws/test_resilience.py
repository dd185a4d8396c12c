import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from incident_commander.aws.resilience import (
    BreakerState,
    CircuitBreaker,
    ProbeFailed,
    backoff_delay,
    call_with_retries,
)


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "ListTables")


def denied() -> ClientError:
    return ClientError({"Error": {"Code": "InvalidClientTokenId", "Message": "bad"}}, "GetCallerIdentity")


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 2.0), (10, 2.0)]
)
def test_full_jitter_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, base=0.2, cap=2.0, rng=lambda: 1.0) == pytest.approx(ceiling)
    assert backoff_delay(attempt, base=0.2, cap=2.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, base=0.2, cap=2.0, rng=lambda: 0.5) == pytest.approx(ceiling / 2)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def flaky(failures: list[Exception], result: str = "ok") -> Callable[[], Awaitable[str]]:
    calls = iter(failures)

    async def call() -> str:
        error = next(calls, None)
        if error is not None:
            raise error
        return result

    return call


def test_retries_retryable_errors_sleeping_the_backoff() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = run(
        call_with_retries(
            flaky([throttled(), EndpointConnectionError(endpoint_url="http://x")]),
            max_attempts=3,
            base_delay=0.1,
            max_delay=1.0,
            sleep=sleep,
            rng=lambda: 1.0,
        )
    )
    assert result == "ok"
    assert slept == [pytest.approx(0.1), pytest.approx(0.2)]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    async def sleep(_: float) -> None:
        pass

    with pytest.raises(ProbeFailed) as caught:
        run(
            call_with_retries(
                flaky([throttled()] * 5), max_attempts=3, base_delay=0.1, max_delay=1.0, sleep=sleep
            )
        )
    assert caught.value.attempts == 3
    assert caught.value.error.reason == "Throttled"


def test_credential_errors_are_not_retried() -> None:
    async def sleep(_: float) -> None:
        raise AssertionError("must not sleep")

    with pytest.raises(ProbeFailed) as caught:
        run(call_with_retries(flaky([denied()]), max_attempts=5, base_delay=0.1, max_delay=1.0, sleep=sleep))
    assert caught.value.attempts == 1 and caught.value.error.reason == "InvalidClientTokenId"


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10)
    for t in (0, 1, 2):
        assert breaker.allow(t)
        breaker.record_failure(t)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(5)
    assert breaker.allow(12.5) and breaker.state is BreakerState.HALF_OPEN
    breaker.record_failure(12.5)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(20)
    assert breaker.allow(23)
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0


def test_success_resets_the_count_before_the_threshold() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10)
    breaker.record_failure(0)
    breaker.record_failure(1)
    breaker.record_success()
    breaker.record_failure(2)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 1
