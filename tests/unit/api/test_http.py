"""The API app over real loopback sockets: CORS allow-list, TLS from certificate files, JSON errors.

No Kubernetes here: the keyring and directory are in-memory, filled with real keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
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


def test_bodies_are_read_whatever_their_framing_type_parameters_or_encoding() -> None:
    """The reader takes a body buffered with its head at once, and waits for one that is not:
    chunked, compressed, sent in pieces, or in UTF-16; the media type's case and parameters do
    not matter, another type is a 415 and a body over the limit a 413."""

    async def scenario() -> list[tuple[int, str]]:
        ctx, key = context()
        port = free_port()
        servers = await serve(OperatorConfig(api_port=port, metrics_port=0, bind_address="127.0.0.1"), ctx)
        url = f"http://127.0.0.1:{port}/v1/route"
        body = json.dumps({"policy": "p", "taskType": "t", "complexity": 0.1, "estimatedTokens": 1})
        auth = {"Authorization": f"ApiKey {key}"}

        async def pieces() -> AsyncIterator[bytes]:
            for at in range(0, len(body), 7):
                await asyncio.sleep(0.01)
                yield body[at : at + 7].encode()

        sends: list[tuple[dict[str, str], Any]] = [
            ({"Content-Type": "application/json"}, body.encode()),
            ({"Content-Type": "Application/JSON; charset=utf-8"}, body.encode()),
            ({"Content-Type": "application/json"}, pieces()),  # chunked, in pieces over 100 ms
            ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(body.encode())),
            ({"Content-Type": "application/json"}, body.encode("utf-16")),
            ({"Content-Type": "application/json"}, body.encode("utf-16-le")),
            ({"Content-Type": "text/plain"}, body.encode()),
            ({"Content-Type": "application/json"}, b'{"pad": "' + b"x" * ctx.max_body_bytes + b'"}'),
        ]
        seen = []
        try:
            async with aiohttp.ClientSession() as session:
                for headers, data in sends:
                    async with session.post(url, data=data, headers={**auth, **headers}) as r:
                        answer = await r.json()
                        seen.append((r.status, answer.get("model") or answer.get("error")))
        finally:
            await servers.stop()
        return seen

    assert asyncio.run(scenario()) == [
        (200, "s"),
        (200, "s"),
        (200, "s"),
        (200, "s"),
        (200, "s"),
        (200, "s"),
        (415, "UnsupportedMediaType"),
        (413, "PayloadTooLarge"),
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


def certificate_pair(common_name: str) -> tuple[bytes, bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost: PEM certificate, PEM key, DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key_pem,
        cert.public_bytes(serialization.Encoding.DER),
    )


class SecretVolume:
    """A directory laid out as the kubelet mounts a Secret: ``tls.crt`` -> ``..data/tls.crt``, and
    ``..data`` a symlink to a timestamped directory, swapped atomically on every update."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        root.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(Path("..data") / name)

    def write(self, cert: bytes, key: bytes) -> None:
        self.version += 1
        target = self.root / f"..2026_01_01_00_00_{self.version:02d}"
        target.mkdir()
        (target / "tls.crt").write_bytes(cert)
        (target / "tls.key").write_bytes(key)
        staged = self.root / "..data_tmp"
        staged.symlink_to(target.name)
        staged.rename(self.root / "..data")


async def served_certificate(port: int, *, server_hostname: str | None = None) -> bytes:
    """The DER certificate a new TLS connection is shown (no verification: we compare bytes)."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname=server_hostname or ""
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    """cert-manager renews the Secret, the kubelet swaps the mounted files: new connections get the
    new certificate (with and without SNI) and verify against it, a connection already open keeps
    working, and a half-written pair (new certificate, old key) is refused while the last good
    certificate stays in service."""
    volume = SecretVolume(tmp_path / "tls")
    first_cert, first_key, first_der = certificate_pair("first")
    volume.write(first_cert, first_key)
    second_cert, second_key, second_der = certificate_pair("second")
    third_cert, _, _ = certificate_pair("third")

    async def scenario() -> None:
        ctx, _ = context()
        port = free_port()
        config = OperatorConfig(
            api_port=port,
            metrics_port=0,
            bind_address="127.0.0.1",
            tls_cert_file=str(volume.root / "tls.crt"),
            tls_key_file=str(volume.root / "tls.key"),
        )
        servers = HttpServers(
            config=config, metrics=OperatorMetrics(), api=build_api_app(ctx), tls_reload_interval=0.1
        )
        await servers.start()
        url = f"https://127.0.0.1:{port}/readyz"
        try:
            assert await served_certificate(port) == first_der
            (tmp_path / "first.pem").write_bytes(first_cert)
            (tmp_path / "second.pem").write_bytes(second_cert)
            trust_first = ssl.create_default_context(cafile=str(tmp_path / "first.pem"))
            trust_second = ssl.create_default_context(cafile=str(tmp_path / "second.pem"))
            async with aiohttp.ClientSession() as kept:  # one keep-alive connection across the renewal
                async with kept.get(url, ssl=trust_first) as r:
                    assert r.status == 200

                volume.write(second_cert, second_key)
                for _ in range(100):
                    if await served_certificate(port) == second_der:
                        break
                    await asyncio.sleep(0.05)
                assert await served_certificate(port) == second_der
                assert await served_certificate(port, server_hostname="localhost") == second_der
                async with aiohttp.ClientSession() as fresh:
                    async with fresh.get(url, ssl=trust_second) as r:
                        assert r.status == 200
                    with pytest.raises(aiohttp.ClientConnectorCertificateError):
                        async with fresh.get(url, ssl=trust_first):
                            pass
                async with kept.get(url, ssl=trust_first) as r:  # the open connection still serves
                    assert r.status == 200
            assert servers.tls is not None and servers.tls.reloads == 1

            volume.write(third_cert, second_key)  # a certificate without its key
            await asyncio.sleep(0.5)
            assert servers.tls.reloads == 1
            assert await served_certificate(port) == second_der
        finally:
            await servers.stop()

    asyncio.run(scenario())
