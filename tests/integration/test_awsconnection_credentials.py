"""Role chains and web identity against moto's STS, with the operator as a subprocess.

STS calls go through a recording proxy (the Bedrock double forwards every non-Bedrock request to
moto and records it), so the tests see which identity signed each hop and what it sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.integration.test_awsconnection import ACCESS_KEY, MOTO_ACCOUNT, connection, ready, secret
from tests.support.bedrock import BedrockDouble, Call
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, condition

pytestmark = pytest.mark.integration

ROLE = f"arn:aws:iam::{MOTO_ACCOUNT}:role/"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6aWM6b3BlcmF0b3IifQ.c2ln"


@pytest.fixture(scope="module")
def recorder(moto: MotoServer) -> Iterator[BedrockDouble]:
    with BedrockDouble(upstream=moto.url) as double:
        yield double


def sts_calls(recorder: BedrockDouble, since: float) -> list[tuple[str, dict[str, str], Call]]:
    """(Action, form fields, call) of every STS request since ``since``, in order."""
    calls = []
    for call in recorder.forwarded():
        if call.at >= since and call.service in ("sts", "unsigned"):
            form = {k: v[0] for k, v in parse_qs(call.raw_body.decode()).items()}
            calls.append((form.get("Action", ""), form, call))
    return calls


def test_a_two_hop_chain_is_ready_as_the_last_role_each_hop_signed_by_the_one_before(
    crds: Kube, operator: OperatorProcess, recorder: BedrockDouble, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    manifest = connection("chain", recorder.url, ["sts", "s3"])
    manifest["spec"]["credentials"]["assumeRoleChain"] = [
        {"roleArn": ROLE + "hub", "externalId": "hub-external-id", "sessionName": "ic-hub"},
        {"roleArn": ROLE + "spoke", "sessionName": "ic-spoke"},
    ]
    since = time.monotonic()
    crds.apply(manifest, namespace)
    obj = ready(crds, namespace, "chain", operator)

    assert obj["status"]["arn"] == f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/spoke/ic-spoke"
    assert obj["status"]["accountId"] == MOTO_ACCOUNT
    message = condition(obj, "CredentialsResolved")["message"]  # type: ignore[index]
    assert f"role {ROLE}spoke assumed through {ROLE}hub with the keys of Secret aws-creds" in message

    calls = sts_calls(recorder, since)
    hops = [
        (f, c)
        for action, f, c in calls
        if action == "AssumeRole" and f["RoleArn"] in (ROLE + "hub", ROLE + "spoke")
    ]
    assert [form["RoleArn"] for form, _ in hops] == [ROLE + "hub", ROLE + "spoke"]
    (first, first_call), (second, second_call) = hops
    assert first["ExternalId"] == "hub-external-id" and "ExternalId" not in second
    assert (first["RoleSessionName"], second["RoleSessionName"]) == ("ic-hub", "ic-spoke")
    assert first_call.access_key_id == ACCESS_KEY  # hop 1 signs with the Secret's keys
    assert second_call.access_key_id not in (None, ACCESS_KEY)  # hop 2 with hop 1's session
    identity = [call for action, _, call in calls if action == "GetCallerIdentity"]
    assert identity and {c.access_key_id for c in identity}.isdisjoint(
        {ACCESS_KEY, second_call.access_key_id}
    )


def test_web_identity_from_an_allowed_token_file_then_a_chain(
    crds: Kube, operator: OperatorProcess, recorder: BedrockDouble, namespace: str, web_identity_dir: Path
) -> None:
    token_file = web_identity_dir / f"{namespace}.token"
    token_file.write_text(TOKEN + "\n")
    web = {"tokenFile": str(token_file), "roleArn": ROLE + "irsa", "sessionName": "ic-web"}
    alone = connection("web", recorder.url, ["sts"], credentials={"webIdentity": web})
    since = time.monotonic()
    crds.apply(alone, namespace)
    obj = ready(crds, namespace, "web", operator)
    assert obj["status"]["arn"] == f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/irsa/ic-web"
    sent = [(f, c) for action, f, c in sts_calls(recorder, since) if action == "AssumeRoleWithWebIdentity"]
    assert sent and all(f["WebIdentityToken"] == TOKEN and f["RoleArn"] == ROLE + "irsa" for f, _ in sent)
    assert all(c.service == "unsigned" and "Authorization" not in c.headers for _, c in sent)

    chained = connection(
        "web-chain",
        recorder.url,
        ["sts"],
        credentials={"webIdentity": web, "assumeRoleChain": [{"roleArn": ROLE + "target"}]},
    )
    crds.apply(chained, namespace)
    obj = ready(crds, namespace, "web-chain", operator)
    assert obj["status"]["arn"] == f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/target/incident-commander"
    assert "with web identity token file" in condition(obj, "CredentialsResolved")["message"]  # type: ignore[index]


def test_a_token_file_outside_the_allowed_directories_is_never_sent(
    crds: Kube, operator: OperatorProcess, recorder: BedrockDouble, namespace: str, tmp_path: Path
) -> None:
    outside = tmp_path / "token"
    outside.write_text("operator-secret-token-marker")
    web = {"tokenFile": str(outside), "roleArn": ROLE + "irsa"}
    since = time.monotonic()
    crds.apply(connection("outside", recorder.url, ["sts"], credentials={"webIdentity": web}), namespace)
    obj = ready(crds, namespace, "outside", operator, status="False", reason="WebIdentityTokenNotAllowed")
    assert condition(obj, "CredentialsResolved")["reason"] == "WebIdentityTokenNotAllowed"  # type: ignore[index]
    assert str(outside) in condition(obj, "Ready")["message"]  # type: ignore[index]
    sent = [f for action, f, _ in sts_calls(recorder, since) if action == "AssumeRoleWithWebIdentity"]
    assert all("operator-secret-token-marker" not in f.get("WebIdentityToken", "") for f in sent)
    assert "operator-secret-token-marker" not in operator.process.log_text()


def test_a_missing_token_file_and_a_refused_hop_name_what_failed(
    crds: Kube,
    operator: OperatorProcess,
    moto_with_auth: MotoServer,
    namespace: str,
    web_identity_dir: Path,
) -> None:
    web = {"tokenFile": str(web_identity_dir / "absent.token"), "roleArn": ROLE + "irsa"}
    crds.apply(connection("nofile", moto_with_auth.url, ["sts"], credentials={"webIdentity": web}), namespace)
    obj = ready(crds, namespace, "nofile", operator, status="False", reason="WebIdentityTokenUnreadable")
    assert "absent.token" in condition(obj, "Ready")["message"]  # type: ignore[index]

    crds.apply(secret(), namespace)
    manifest = connection("refused", moto_with_auth.url, ["sts"])
    manifest["spec"]["credentials"]["assumeRoleChain"] = [
        {"roleArn": ROLE + "hub"},
        {"roleArn": ROLE + "spoke"},
    ]
    crds.apply(manifest, namespace)
    obj = ready(crds, namespace, "refused", operator, status="False", reason="AssumeRoleFailed")
    message = condition(obj, "CredentialsResolved")["message"]  # type: ignore[index]
    assert f"AssumeRole {ROLE}hub (role 1 of 2) failed: InvalidClientTokenId" in message


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto checking credentials against its IAM: unknown keys get InvalidClientTokenId."""
    server = MotoServer.start(
        tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}, name="moto-auth"
    )
    yield server
    server.stop()
