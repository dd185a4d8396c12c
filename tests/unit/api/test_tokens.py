from __future__ import annotations

import base64
import json
import random
from datetime import timedelta
from typing import Any

import jwt
import pytest

from incident_commander.api.keyring import Keyring
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.api.tokens import VerifiedTokens, issue_token, unverified_parts, verify_token
from incident_commander.credentials import signing
from incident_commander.kinds.incidentpolicy.spec import TokenSettings
from tests.unit.api.keys import NOW, NS, client, keyring_with, retire, signing_secret

SETTINGS = TokenSettings(issuer="ic", audience="api", ttl=timedelta(minutes=15))


def setup(algorithm: signing.Algorithm = "EdDSA") -> tuple[Keyring, Principal, signing.SigningKey]:
    keyring, keys, key = keyring_with("p", [client("agent", "responder")], algorithm)
    principal = keyring.verify_api_key(keys["agent"], NOW)
    assert isinstance(principal, Principal)
    return keyring, principal, key


def verify(keyring: Keyring, token: str, at: Any = NOW) -> Principal | AuthFailure:
    return verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=at)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_round_trip_for_every_algorithm(algorithm: signing.Algorithm) -> None:
    keyring, principal, key = setup(algorithm)
    issued = issue_token(principal, keyring=keyring, settings=SETTINGS, now=NOW)
    assert issued is not None and issued.kid == key.kid
    assert verify(keyring, issued.token) == Principal(**{**principal.__dict__, "method": "jwt"})
    assert issued.expires_at == NOW + timedelta(minutes=15)


def claims(principal: Principal, **changes: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    base = {
        "iss": "ic", "aud": "api", "sub": principal.client, "role": principal.role,
        "policy": principal.policy, "ns": principal.namespace, "akid": principal.key_id,
        "iat": now, "nbf": now, "exp": now + 60,
    }  # fmt: skip
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(key: signing.SigningKey, payload: dict[str, Any], **header: Any) -> str:
    return jwt.encode(payload, key.private_key(), algorithm=key.algorithm, headers={"kid": key.kid, **header})


def b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def reason(result: Principal | AuthFailure) -> str:
    assert isinstance(result, AuthFailure), result
    return result.reason


def test_rejections_name_their_reason() -> None:
    keyring, principal, key = setup()
    good = claims(principal)
    assert isinstance(verify(keyring, signed(key, good)), Principal)
    assert (
        reason(verify(keyring, signed(key, claims(principal, exp=int(NOW.timestamp()) - 1))))
        == "expired_token"
    )
    assert (
        reason(verify(keyring, signed(key, claims(principal, nbf=int(NOW.timestamp()) + 30))))
        == "token_not_yet_valid"
    )
    assert reason(verify(keyring, signed(key, claims(principal, aud="other")))) == "wrong_audience"
    assert reason(verify(keyring, signed(key, claims(principal, iss="other")))) == "wrong_issuer"
    assert reason(verify(keyring, signed(key, claims(principal, exp=None)))) == "invalid_token"
    assert reason(verify(keyring, signed(key, claims(principal, iat=int(NOW.timestamp()) + 30)))) == (
        "token_not_yet_valid"
    )
    # The key is looked up under the policy the token claims: policy q has no key of that kid.
    assert reason(verify(keyring, signed(key, claims(principal, policy="q")))) == "unknown_kid"
    assert reason(verify(keyring, signed(key, claims(principal, akid="0" * 16)))) == "revoked_api_key"
    assert reason(verify(keyring, signed(key, claims(principal, role="admin")))) == "revoked_api_key"
    assert reason(verify(keyring, "not a token")) == "malformed_token"
    assert reason(verify(keyring, "x" * 9000)) == "malformed_token"


def test_algorithm_confusion_is_refused() -> None:
    keyring, principal, key = setup("RS256")
    payload = claims(principal)
    none_token = f"{b64({'alg': 'none', 'kid': key.kid})}.{b64(payload)}."
    assert reason(verify(keyring, none_token)) == "algorithm_mismatch"
    public_pem = (
        key.private_key()
        .public_key()
        .public_bytes(
            signing.serialization.Encoding.PEM, signing.serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'HS256', 'kid': key.kid})}.{b64(payload)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs_token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert reason(verify(keyring, hs_token)) == "algorithm_mismatch"
    # A token whose header says RS256 but whose key is EdDSA (a swapped kid) fails the pin too.
    other = signing.generate_signing_key("EdDSA", NOW)
    swapped = signed(other, payload)
    assert reason(verify(keyring, swapped)) == "unknown_kid"


def test_tampered_payload_fails_the_signature() -> None:
    keyring, principal, key = setup()
    header, _, signature = signed(key, claims(principal)).split(".")
    # A change that passes every check made before the signature (a later expiry): only the
    # signature catches it. (A changed sub or role is refused before, as the API key's.)
    longer = claims(principal, exp=int(NOW.timestamp()) + 7200)
    assert reason(verify(keyring, f"{header}.{b64(longer)}.{signature}")) == "bad_signature"
    other_client = claims(principal, sub="someone-else")
    assert reason(verify(keyring, f"{header}.{b64(other_client)}.{signature}")) == "revoked_api_key"


def test_retired_key_verifies_until_not_after() -> None:
    keyring, principal, key = setup()
    token = signed(key, claims(principal, exp=int(NOW.timestamp()) + 3600))
    fresh = signing.generate_signing_key("EdDSA", NOW)
    keyring.secret_event("MODIFIED", signing_secret("p", (fresh, retire(key, NOW + timedelta(minutes=5)))))
    assert isinstance(verify(keyring, token, NOW + timedelta(minutes=4)), Principal)
    assert reason(verify(keyring, token, NOW + timedelta(minutes=5))) == "unknown_kid"
    issued = issue_token(principal, keyring=keyring, settings=SETTINGS, now=NOW)
    assert issued is not None and issued.kid == fresh.kid


def test_no_signing_key_no_token() -> None:
    keyring, principal, _ = setup()
    keyring.secret_event("DELETED", signing_secret("p", ()))
    assert issue_token(principal, keyring=keyring, settings=SETTINGS, now=NOW) is None
    assert principal.namespace == NS


def test_cached_tokens_still_see_revocation_expiry_and_key_retirement() -> None:
    keyring, principal, key = setup()
    cache = VerifiedTokens()
    token = signed(key, claims(principal, exp=int(NOW.timestamp()) + 600))

    def check(at: Any = NOW) -> Principal | AuthFailure:
        return verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=at, cache=cache)

    assert isinstance(check(), Principal) and len(cache) == 1
    assert isinstance(check(), Principal)
    assert reason(check(NOW + timedelta(minutes=10))) == "expired_token"
    # The signing key is retired and then gone: the cached verification no longer counts.
    fresh = signing.generate_signing_key("EdDSA", NOW)
    keyring.secret_event("MODIFIED", signing_secret("p", (fresh, retire(key, NOW + timedelta(minutes=1)))))
    assert isinstance(check(), Principal)
    assert reason(check(NOW + timedelta(minutes=2))) == "unknown_kid"
    # A tampered token never matches a cached one.
    header, payload, signature = token.split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]  # the first character is all signal
    assert reason(check_other(keyring, cache, f"{header}.{payload}.{flipped}")) in {
        "bad_signature",
        "invalid_token",
    }


def check_other(keyring: Keyring, cache: VerifiedTokens, token: str) -> Principal | AuthFailure:
    return verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=NOW, cache=cache)


def test_cached_tokens_see_a_changed_audience() -> None:
    keyring, principal, key = setup()
    cache = VerifiedTokens()
    token = signed(key, claims(principal))
    assert isinstance(
        verify_token(token, keyring=keyring, settings_for=lambda _: SETTINGS, now=NOW, cache=cache), Principal
    )
    moved = TokenSettings(issuer="ic", audience="elsewhere", ttl=timedelta(minutes=15))
    result = verify_token(token, keyring=keyring, settings_for=lambda _: moved, now=NOW, cache=cache)
    assert reason(result) == "wrong_audience"


def pyjwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None


def test_unverified_parts_accepts_what_pyjwt_accepts() -> None:
    _, principal, key = setup("ES256")
    good = signed(key, claims(principal))
    head, body, signature = good.split(".")
    cases = [
        good,
        f"{head}.{body}.",  # no signature (alg none): well-formed, refused later by the pin
        f"{head}.{body}",
        f"{head}.{body}.{signature}.{signature}",
        f".{body}.{signature}",
        f"{head}..{signature}",
        "not.a.token",
        "..",
        "",
        f"{head}!.{body}.{signature}",
        f"{head}.{body}.{signature}é",
        f"{b64([1, 2])}.{body}.{signature}",  # JSON, not an object
        f"{head}.{b64('text')}.{signature}",
        f"{b64({'alg': 'ES256', 'kid': 7})}.{body}.{signature}",  # kid not a string
        f"{head[:-1]}.{body}.{signature}",
        f"{head}.{body}.{signature[:-1]}",
    ]
    # Random one-character changes, most of them in the header and claims.
    rng = random.Random(19)  # noqa: S311 - reproducible mutations, not a secret
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/!"
    for _ in range(3000):
        at = rng.randrange(len(head) + len(body) + 20)
        cases.append(good[:at] + rng.choice(alphabet) + good[at + 1 :])
    agreed = 0
    for token in cases:
        assert unverified_parts(token) == pyjwt_parts(token), token
        agreed += unverified_parts(token) is not None
    assert 0 < agreed < len(cases)  # both kinds of answer were compared


def test_unverified_parts_refuses_what_our_issuer_never_writes() -> None:
    _, principal, key = setup("ES256")
    _, body, signature = signed(key, claims(principal)).split(".")
    for refused in ({"alg": "ES256", "crit": ["exp"], "exp": 1}, {"alg": "ES256", "b64": False}):
        assert unverified_parts(f"{b64(refused)}.{body}.{signature}") is None
    # PyJWT accepts a padded segment; a header one or two bytes longer needs padding.
    header = next(
        h for h in (b64({"alg": "ES256", "kid": key.kid, "x": "a" * n}) for n in range(3)) if len(h) % 4
    )
    padded = header + "=" * (-len(header) % 4)
    assert pyjwt_parts(f"{padded}.{body}.{signature}") is not None
    assert unverified_parts(f"{padded}.{body}.{signature}") is None


def test_claims_nested_past_the_parsers_recursion_are_malformed_not_an_error() -> None:
    keyring, principal, key = setup()
    head = signed(key, claims(principal)).split(".")[0]
    deep = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()  # within MAX_TOKEN_BYTES
    assert reason(verify(keyring, f"{head}.{deep}.c2ln")) == "malformed_token"
