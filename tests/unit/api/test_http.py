"""The API app over real loopback sockets: CORS allow-list, TLS from certificate files, JSON errors.

No Kubernetes here: the keyring and directory are in-memory, filled with real keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from incident_commander.api.app import build_api_app
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.metrics import ApiMetrics
from incident_commander.config import OperatorConfig
from incident_commander.metrics import OperatorMetrics
from incident_commander.servers import HttpServers
from tests.support.budgets import NoBudgets
from tests.unit.api.keys import NS, client, keyring_with

ORIGIN = "https://console.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def context() -> tuple[ApiContext, str]:
    keyring, keys, _ = keyring_with("p", [client("agent", "responder")])
    directory = Directory()
    directory.observe(
        "IncidentPolicy",
        None,
        {
            "metadata": {"namespace": NS, "name": "p"},
            "spec": {
                "connectionRef": {"name": "conn"},
                "modelRouting": {"simpleModel": "s", "complexModel": "c"},
            },
        },
    )
    ctx = ApiContext(
        keyring=keyring,
        directory=directory,
        metrics=ApiMetrics(CollectorRegistry()),
        budgets=NoBudgets(),
        cors_origins=frozenset({ORIGIN}),
    )
    return ctx, keys["agent"]


async def serve(config: OperatorConfig, ctx: ApiContext) -> HttpServers:
    servers = HttpServers(config=config, metrics=OperatorMetrics(), api=build_api_app(ctx))
    await servers.start()
    return servers


def test_cors_allow_list_on_answers_and_errors() -> None:
    async def scenario() -> list[Any]:
        ctx, key = context()
        port = free_port()
        servers = await serve(OperatorConfig(api_port=port, metrics_port=0, bind_address="127.0.0.1"), ctx)
        url = f"http://127.0.0.1:{port}"
        seen = []
        try:
            async with aiohttp.ClientSession() as session:
                preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
                async with session.options(f"{url}/v1/route", headers=preflight) as r:
                    seen.append((r.status, r.headers.get("Access-Control-Allow-Origin")))
                async with session.options(
                    f"{url}/v1/route", headers={**preflight, "Origin": "https://evil"}
                ) as r:
                    seen.append((r.status, r.headers.get("Access-Control-Allow-Origin")))
                body = {"policy": "p", "taskType": "t", "complexity": 0.9, "estimatedTokens": 1}
                auth = {"Authorization": f"ApiKey {key}"}
                async with session.post(
                    f"{url}/v1/route", json=body, headers={**auth, "Origin": ORIGIN}
                ) as r:
                    seen.append(
                        (r.status, r.headers.get("Access-Control-Allow-Origin"), (await r.json())["model"])
                    )
                async with session.post(f"{url}/v1/route", json=body, headers={"Origin": ORIGIN}) as r:
                    seen.append((r.status, r.headers.get("Access-Control-Allow-Origin")))
                async with session.post(
                    f"{url}/v1/route", json=body, headers={**auth, "Origin": "https://evil"}
                ) as r:
                    seen.append((r.status, r.headers.get("Access-Control-Allow-Origin")))
                async with session.get(f"{url}/v1/nothing-here") as r:
                    seen.append((r.status, (await r.json())["error"]))
                async with session.put(f"{url}/v1/route") as r:
                    seen.append((r.status, (await r.json())["error"], r.headers.get("Allow")))
        finally:
            await servers.stop()
        return seen

    assert asyncio.run(scenario()) == [
        (204, ORIGIN),
        (403, None),
        (200, ORIGIN, "c"),
        (401, ORIGIN),  # errors carry CORS headers too, so a browser can read why
        (200, None),  # a non-browser client is not stopped by CORS; the browser would be
        (404, "NotFound"),
        (405, "MethodNotAllowed", "POST"),
    ]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_api_speaks_tls_from_certificate_files(tmp_path: Path) -> None:
    cert, key_file = self_signed(tmp_path)

    async def scenario() -> tuple[int, str]:
        ctx, _ = context()
        port = free_port()
        config = OperatorConfig(
            api_port=port,
            metrics_port=0,
            bind_address="127.0.0.1",
            tls_cert_file=str(cert),
            tls_key_file=str(key_file),
        )
        servers = await serve(config, ctx)
        try:
            trust = ssl.create_default_context(cafile=str(cert))
            async with aiohttp.ClientSession() as session:
                async with session.get(f"https://127.0.0.1:{port}/readyz", ssl=trust) as r:
                    status = r.status
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                        plain = f"plain HTTP answered {r.status}"
                except aiohttp.ClientError as exc:
                    plain = type(exc).__name__
        finally:
            await servers.stop()
        return status, plain

    status, plain = asyncio.run(scenario())
    assert status == 200
    assert plain.startswith("plain HTTP answered 400") or "Error" in plain
