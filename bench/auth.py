"""Cost of authentication in the operator's API, next to the floor of what it must do anyway.

    python -m bench.auth [--keys 100000] [--samples 20000] [--seconds 10]

1. API-key verification with ``--keys`` keys issued (the keyring as the API
   holds it), next to a bare dict lookup of the same key ids.
2. JWT verification (our ``verify_token``: kid lookup, pinned algorithm,
   claims, the API key behind the token) next to a bare ``jwt.decode`` with
   the same EdDSA key.
3. ``POST /v1/route`` over loopback with a Bearer JWT, next to a bare aiohttp
   endpoint that parses the JSON body and answers JSON (the I/O any JSON
   endpoint does, without authentication, rate limiting, validation, routing,
   history or metrics), each served by its own process and
   loaded by wrk (Debian package ``wrk``) with the same connections and
   duration, one after the other in the same run.

Times are per call in microseconds (p50/p99 of individual calls measured with
perf_counter_ns); ratios are ours / the floor, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from prometheus_client import CollectorRegistry

from incident_commander.api.app import build_api_app
from incident_commander.api.context import ApiContext, UsageRejected
from incident_commander.api.directory import Directory, PolicyView
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.api.principal import Principal
from incident_commander.api.tokens import VerifiedTokens, issue_token, verify_token
from incident_commander.budget.enforcement import EffectiveRouting
from incident_commander.credentials import api_keys, signing
from incident_commander.credentials.api_keys import KeyEntry, KeyIndex
from incident_commander.kinds.incidentpolicy.spec import TokenSettings, effective_routing_for

NAMESPACE, POLICY = "bench", "policy"
SETTINGS = TokenSettings(
    issuer="incident-commander", audience="incident-commander-api", ttl=timedelta(minutes=15)
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(fn: Callable[[Any], Any], inputs: list[Any]) -> list[float]:
    """Microseconds per call, one measurement per call."""
    clock = time.perf_counter_ns
    out = []
    for item in inputs:
        started = clock()
        fn(item)
        out.append((clock() - started) / 1000)
    return out


def build_keyring(
    count: int, now: datetime, algorithm: signing.Algorithm = "EdDSA"
) -> tuple[Keyring, list[str], signing.SigningKey]:
    """``count`` active keys spread over 100 clients of one policy, plus one signing key."""
    entries = []
    plaintexts = []
    for i in range(count):
        key = api_keys.generate_key()
        plaintexts.append(key.plaintext)
        entries.append(
            KeyEntry(
                key_id=key.key_id,
                client=f"client-{i}",
                role="responder",
                hash=key.hash,
                issued_at=now,
                expires_at=now + timedelta(days=30),
                state="Active",
            )
        )
    keyring = Keyring()
    keyring.set_index((NAMESPACE, POLICY), KeyIndex(entries=tuple(entries)))
    signing_key = signing.generate_signing_key(algorithm, now)
    keyring.set_signing_keys((NAMESPACE, POLICY), (signing_key,))
    return keyring, plaintexts, signing_key


def report(name: str, ours: list[float], floor: list[float]) -> dict[str, float]:
    row = {
        "p50_us": statistics.median(ours),
        "p99_us": percentile(ours, 0.99),
        "floor_p50_us": statistics.median(floor),
        "floor_p99_us": percentile(floor, 0.99),
    }
    row["ratio_p50"] = row["p50_us"] / row["floor_p50_us"]
    print(
        f"{name:<26} p50 {row['p50_us']:8.2f} µs  p99 {row['p99_us']:8.2f} µs   "
        f"floor p50 {row['floor_p50_us']:7.2f} µs  p99 {row['floor_p99_us']:7.2f} µs   "
        f"ours/floor {row['ratio_p50']:6.1f}x"
    )
    return row


def bench_keys(count: int, samples: int) -> dict[str, float]:
    now = datetime.now(UTC)
    keyring, plaintexts, _ = build_keyring(count, now)
    chosen = random.Random(  # noqa: S311 - sampling for a benchmark
        1
    ).choices(plaintexts, k=samples)
    bare = {api_keys.parse_key_id(p): p for p in plaintexts}
    ids = [api_keys.parse_key_id(p) for p in chosen]
    time_calls(lambda k: keyring.verify_api_key(k, now), chosen[:1000])  # warm-up
    ours = time_calls(lambda k: keyring.verify_api_key(k, now), chosen)
    floor = time_calls(lambda k: bare[k], ids)
    assert all(not isinstance(keyring.verify_api_key(k, now), str) for k in chosen[:10])
    return report(f"api key ({count:,} keys)", ours, floor)


def bench_jwt(count: int, samples: int, algorithm: signing.Algorithm = "EdDSA") -> dict[str, float]:
    now = datetime.now(UTC)
    keyring, plaintexts, signing_key = build_keyring(count, now, algorithm)
    tokens = []
    for plaintext in random.Random(  # noqa: S311 - sampling for a benchmark
        2
    ).sample(plaintexts, 200):
        principal = keyring.verify_api_key(plaintext, now)
        assert isinstance(principal, Principal)
        issued = issue_token(principal, keyring=keyring, settings=SETTINGS, now=now)
        assert issued is not None
        tokens.append(issued.token)
    chosen = random.Random(  # noqa: S311 - sampling for a benchmark
        3
    ).choices(tokens, k=samples)
    public = signing_key.private_key().public_key()

    def ours(token: str) -> Any:
        result = verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=now)
        assert isinstance(result, Principal)
        return result

    cache = VerifiedTokens()

    def ours_cached(token: str) -> Any:
        result = verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=now, cache=cache)
        assert isinstance(result, Principal)
        return result

    def floor(token: str) -> Any:
        return jwt.decode(
            token, public, algorithms=[algorithm], audience=SETTINGS.audience, issuer=SETTINGS.issuer
        )

    time_calls(ours, chosen[:500])
    time_calls(floor, chosen[:500])
    time_calls(ours_cached, tokens)  # every token seen once: the cache holds them all
    floor_times = time_calls(floor, chosen)
    cold = report(f"jwt ({algorithm}), first use", time_calls(ours, chosen), floor_times)
    warm = report(f"jwt ({algorithm}), re-used", time_calls(ours_cached, chosen), floor_times)
    return {**cold, "warm_p50_us": warm["p50_us"], "warm_p99_us": warm["p99_us"]}


def bench_algorithms(samples: int) -> dict[str, dict[str, float]]:
    """Per signing algorithm: first-use verification (ours and a bare ``jwt.decode``), issuing a
    token (``POST /v1/token``'s signature), generating a key (once per policy and rotation), and
    the sizes a client and a JWKS reader see."""
    rows: dict[str, dict[str, float]] = {}
    now = datetime.now(UTC)
    for algorithm in ("EdDSA", "ES256", "RS256"):
        row = bench_jwt(1000, samples, algorithm)
        keyring, plaintexts, signing_key = build_keyring(100, now, algorithm)
        principal = keyring.verify_api_key(plaintexts[0], now)
        assert isinstance(principal, Principal)

        def issue(_: Any, principal: Principal = principal, keyring: Keyring = keyring) -> Any:
            return issue_token(principal, keyring=keyring, settings=SETTINGS, now=now)

        time_calls(issue, range(200))
        issued = time_calls(issue, range(min(samples, 5000)))
        generated = time_calls(lambda _, a=algorithm: signing.generate_signing_key(a, now), range(20))
        token = issue(None)
        assert token is not None
        row.update(
            {
                "issue_p50_us": statistics.median(issued),
                "issue_p99_us": percentile(issued, 0.99),
                "keygen_median_ms": statistics.median(generated) / 1000,
                "token_bytes": len(token.token),
                "jwk_bytes": len(json.dumps(signing_key.public_jwk())),
            }
        )
        print(
            f"{algorithm:6s} issue p50 {row['issue_p50_us']:8.1f} µs p99 {row['issue_p99_us']:8.1f} µs; "
            f"key generation {row['keygen_median_ms']:7.2f} ms; token {row['token_bytes']} B; "
            f"JWK {row['jwk_bytes']} B"
        )
        rows[algorithm] = row
    return rows


# -- HTTP throughput ---------------------------------------------------------------------------------


def api_app_for_bench() -> tuple[web.Application, str]:
    now = datetime.now(UTC)
    keyring, plaintexts, _ = build_keyring(1000, now)
    directory = Directory()
    spec = {
        "connectionRef": {"name": "conn"},
        "modelRouting": {"simpleModel": "small", "complexModel": "large"},
        # Far above any load here: the bucket is charged on every request but never refuses.
        "auth": {"rateLimit": {"requestsPerMinute": 10**9, "burst": 10**6}},
    }
    directory.observe(
        "IncidentPolicy", None, {"metadata": {"namespace": NAMESPACE, "name": POLICY}, "spec": spec}
    )
    view = directory.policy(NAMESPACE, POLICY)
    assert view is not None
    principal = keyring.verify_api_key(plaintexts[0], now)
    assert isinstance(principal, Principal)
    issued = issue_token(principal, keyring=keyring, settings=view.spec.token, now=now)
    assert issued is not None
    ctx = ApiContext(
        keyring=keyring,
        directory=directory,
        metrics=ApiMetrics(CollectorRegistry()),
        budgets=_NoBudget(),
    )
    return build_api_app(ctx), issued.token


class _NoBudget:
    """The policy has no budget: routing as its spec says, nowhere to record usage."""

    def effective_for(self, view: PolicyView) -> EffectiveRouting:
        return effective_routing_for(view.spec, None)

    async def record(self, namespace: str, budget: str, **_: Any) -> dict[str, Any]:
        raise UsageRejected(503, "LedgerUnavailable", "no budget in this benchmark")

    async def reserve(self, namespace: str, budget: str, **_: Any) -> None:
        return None  # the policy has no budget: nothing is held

    async def release(self, namespace: str, budget: str, hold: Any) -> None:
        return None

    def budget_status(self, namespace: str, name: str) -> None:
        return None


def bare_app() -> web.Application:
    """The floor: an aiohttp endpoint that parses the JSON body and answers JSON, nothing more
    (no authentication, rate limit, validation, routing, history or metrics)."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"model": "large", "reason": body["taskType"], "budgetPhase": None, "samplingRate": 1.0}
        )

    app = web.Application()
    app.router.add_post("/v1/route", handler)
    return app


def serve(kind: str, port: int, token_file: str) -> None:
    if kind == "api":
        app, token = api_app_for_bench()
        Path(token_file).write_text(token)
    else:
        app = bare_app()
        Path(token_file).write_text("none")
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"policy": "policy", "taskType": "triage", "complexity": 0.8, "estimatedTokens": 1200}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def load(kind: str, seconds: int, connections: int) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.auth",
                "--serve",
                kind,
                "--port",
                str(port),
                "--token-file",
                str(token_file),
            ]
        )
        try:
            deadline = time.monotonic() + 30
            while not token_file.exists() or not _listening(port):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{kind} server did not start")
                time.sleep(0.1)
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT % token_file.read_text())
            out = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}/v1/route",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            server.terminate()
            server.wait(timeout=10)
    if "Non-2xx" in out:
        raise SystemExit(f"{kind}: non-2xx answers under load:\n{out}")
    rate = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    return rate


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds per server")
    parser.add_argument(
        "--algorithms",
        action="store_true",
        help="only the per-algorithm JWT comparison (EdDSA, ES256, RS256), as JSON at the end",
    )
    parser.add_argument("--serve", choices=["api", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.token_file)
        return
    print(f"python {sys.version.split()[0]}, {args.keys:,} keys, {args.samples:,} timed calls each")
    if args.algorithms:
        print(json.dumps(bench_algorithms(args.samples)))
        return
    keys = bench_keys(args.keys, args.samples)
    tokens = bench_jwt(args.keys, args.samples)
    api_rates, bare_rates = [], []
    for _ in range(args.rounds):  # alternate, so drift in machine load hits both alike
        api_rates.append(load("api", args.seconds, args.connections))
        bare_rates.append(load("bare", args.seconds, args.connections))
    api_rate, bare_rate = statistics.median(api_rates), statistics.median(bare_rates)
    print(
        f"/v1/route (JWT)        {api_rate:9.0f} req/s (median of {args.rounds})   "
        f"bare aiohttp {bare_rate:9.0f} req/s   ours/bare {api_rate / bare_rate:6.1%}"
    )
    print(
        json.dumps(
            {
                "api_key": keys,
                "jwt": tokens,
                "route_rps": api_rate,
                "bare_rps": bare_rate,
                "route_ratio": api_rate / bare_rate,
            },
            indent=None,
        )
    )
    targets = [
        ("api key p99 <= 50 µs", keys["p99_us"] <= 50),
        ("jwt p99 <= 150 µs (first use)", tokens["p99_us"] <= 150),
        ("jwt p99 <= 150 µs (re-used token)", tokens["warm_p99_us"] <= 150),
        ("/v1/route >= 50% of bare", api_rate / bare_rate >= 0.5),
    ]
    for name, met in targets:
        print(f"{'met ' if met else 'MISSED'}  {name}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
