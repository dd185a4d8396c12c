from datetime import UTC, datetime, timedelta

import jwt
import pytest

from incident_commander.credentials.signing import (
    SIGNING_KEY_LIFETIME,
    SigningKey,
    generate_signing_key,
    jwks,
    plan_signing_keys,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_generated_keys_sign_tokens_the_jwks_verifies(algorithm: str) -> None:
    key = generate_signing_key(algorithm, NOW)  # type: ignore[arg-type]
    token = jwt.encode({"sub": "x"}, key.private_key(), algorithm=algorithm, headers={"kid": key.kid})
    [public] = jwks([key])["keys"]
    assert public["kid"] == key.kid and public["alg"] == algorithm and "d" not in public
    verifier = jwt.PyJWK(public)
    assert jwt.decode(token, verifier.key, algorithms=[algorithm])["sub"] == "x"
    assert SigningKey.from_json(key.to_json()) == key


def plan(
    keys: tuple[SigningKey, ...], now: datetime = NOW, algorithm: str = "EdDSA", request: str | None = None
):  # type: ignore[no-untyped-def]
    return plan_signing_keys(
        keys, algorithm=algorithm, token_ttl=TTL, rotate_request=request, rotate_handled=None, now=now
    )  # type: ignore[arg-type]


def test_rotation_keeps_the_previous_public_key_until_its_tokens_expire() -> None:
    first = plan(())
    assert first.reason == "Initial" and first.keys is not None
    assert plan(first.keys).keys is None
    later = NOW + SIGNING_KEY_LIFETIME
    rotated = plan(first.keys, now=later)
    assert rotated.reason == "KeyLifetimeElapsed" and rotated.keys is not None
    current, previous = rotated.keys
    assert current.current and previous.not_after == later + TTL
    assert [k["kid"] for k in jwks(rotated.keys)["keys"]] == [current.kid, previous.kid]
    dropped = plan(rotated.keys, now=later + TTL + timedelta(seconds=1))
    assert dropped.reason == "RetiredKeyExpired" and dropped.keys == (current,)


def test_algorithm_change_and_annotation_rotate() -> None:
    first = plan(())
    assert first.keys is not None
    assert plan(first.keys, algorithm="ES256").reason == "AlgorithmChanged"
    assert plan(first.keys, request="now").reason == "RotationRequested"


def test_a_signing_key_s_repr_carries_no_private_key() -> None:
    key = generate_signing_key("ES256", NOW)
    assert "PRIVATE KEY" in key.private_pem
    assert "PRIVATE" not in repr(key) and key.kid in repr(key)
