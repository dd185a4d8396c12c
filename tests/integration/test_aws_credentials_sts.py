"""ConnectionClients against moto's STS, without Kubernetes: who signs each hop, and what a refresh does.

The STS calls go through the Bedrock double as a recording proxy (it forwards them to moto).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.credentials import CredentialsError, StaticKeys
from incident_commander.aws.spec import parse_connection_spec
from tests.support.bedrock import BedrockDouble
from tests.support.endpoints import MotoServer

ROLE = "arn:aws:iam::123456789012:role/"
KEYS = StaticKeys("AKIASOURCEKEY0000001", "source-secret")


@pytest.fixture
def recorder(moto: MotoServer) -> Iterator[BedrockDouble]:
    with BedrockDouble(upstream=moto.url) as double:
        yield double


def sts(recorder: BedrockDouble) -> list[tuple[str, dict[str, str], str | None]]:
    """(Action, form, signing access key) of each STS call, in order."""
    out = []
    for call in recorder.forwarded():
        form = {k: v[0] for k, v in parse_qs(call.raw_body.decode()).items()}
        out.append((form.get("Action", ""), form, call.access_key_id))
    return out


def spec(url: str, **credentials: Any) -> Any:
    return parse_connection_spec({"region": "us-east-1", "endpointUrl": url, "credentials": credentials})


def test_each_hop_is_signed_by_the_one_before_and_the_services_by_the_last(
    recorder: BedrockDouble, tmp_path: Path
) -> None:
    chain = [
        {"roleArn": ROLE + "hub", "externalId": "ext-hub"},
        {"roleArn": ROLE + "spoke", "sessionName": "s2"},
    ]
    clients = ConnectionClients.build(
        spec(recorder.url, secretRef={"name": "k"}, assumeRoleChain=chain), KEYS, ClientCache(4)
    )
    identity = clients.client("sts").get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/spoke/s2"
    (a1, hub, hub_key), (a2, spoke, spoke_key), (a3, _, caller_key) = sts(recorder)
    assert (a1, a2, a3) == ("AssumeRole", "AssumeRole", "GetCallerIdentity")
    assert (hub["RoleArn"], hub["ExternalId"], spoke["RoleArn"]) == (ROLE + "hub", "ext-hub", ROLE + "spoke")
    assert "ExternalId" not in spoke and spoke["DurationSeconds"] == "3600"
    assert hub_key == KEYS.access_key_id
    assert len({hub_key, spoke_key, caller_key}) == 3  # source keys, hub session, spoke session


def test_a_web_identity_token_is_sent_unsigned_and_read_again_at_refresh(
    recorder: BedrockDouble, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first.token.value")
    web = {"tokenFile": str(token), "roleArn": ROLE + "irsa", "durationSeconds": 900}
    ahead = timedelta(0)
    cache = ClientCache(4, web_identity_token_dirs=[str(tmp_path)], clock=lambda: datetime.now(UTC) + ahead)
    clients = ConnectionClients.build(spec(recorder.url, webIdentity=web), None, cache)
    caller = clients.client("sts")
    token.write_text("rotated.token.value")
    for _ in range(3):
        assert caller.get_caller_identity()["Arn"].endswith(":assumed-role/irsa/incident-commander")
    assert web_tokens(recorder) == [("first.token.value", None)]  # unsigned, and no refresh yet
    ahead = timedelta(seconds=700)  # 200 s left: inside the 225 s refresh margin of a 900 s session
    caller.get_caller_identity()
    assert web_tokens(recorder)[:2] == [("first.token.value", None), ("rotated.token.value", None)]


@pytest.mark.parametrize("chain", [[], [{"roleArn": ROLE + "next"}]], ids=["alone", "chained"])
def test_the_shortest_session_allowed_is_not_refreshed_at_every_call(
    recorder: BedrockDouble, tmp_path: Path, chain: list[dict[str, str]]
) -> None:
    """botocore refreshes 15 minutes ahead by default: a 900 s session would be due at once."""
    (tmp_path / "token").write_text("short.lived.token")
    web = {"tokenFile": str(tmp_path / "token"), "roleArn": ROLE + "irsa", "durationSeconds": 900}
    credentials = {"webIdentity": web, **({"assumeRoleChain": chain} if chain else {})}
    cache = ClientCache(4, web_identity_token_dirs=[str(tmp_path)])
    clients = ConnectionClients.build(spec(recorder.url, **credentials), None, cache)
    for _ in range(3):
        clients.client("sts").get_caller_identity()
    actions = [action for action, _, _ in sts(recorder)]
    hops = ["AssumeRole"] if chain else []
    assert actions == ["AssumeRoleWithWebIdentity", *hops, *["GetCallerIdentity"] * 3]


def web_tokens(recorder: BedrockDouble) -> list[tuple[str, str | None]]:
    return [
        (form["WebIdentityToken"], key)
        for action, form, key in sts(recorder)
        if action == "AssumeRoleWithWebIdentity"
    ]


def test_a_refused_hop_names_itself_and_a_disallowed_file_is_never_read(
    recorder: BedrockDouble, tmp_path: Path
) -> None:
    recorder.upstream = "http://127.0.0.1:9"  # nothing listens: every STS call fails
    chain = [{"roleArn": ROLE + "hub"}, {"roleArn": ROLE + "spoke"}]
    with pytest.raises(CredentialsError) as refused:
        ConnectionClients.build(
            spec(recorder.url, secretRef={"name": "k"}, assumeRoleChain=chain), KEYS, ClientCache(4)
        )
    assert refused.value.reason == "AssumeRoleFailed"
    assert f"AssumeRole {ROLE}hub (role 1 of 2) failed" in refused.value.message
    assert KEYS.secret_access_key not in refused.value.message

    recorder.reset()
    (tmp_path / "token").write_text("x")
    web = {"tokenFile": str(tmp_path / "token"), "roleArn": ROLE + "irsa"}
    with pytest.raises(CredentialsError) as outside:
        ConnectionClients.build(spec(recorder.url, webIdentity=web), None, ClientCache(4))
    assert outside.value.reason == "WebIdentityTokenNotAllowed"
    assert recorder.calls == []
