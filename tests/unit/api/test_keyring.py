from __future__ import annotations

from datetime import timedelta

from incident_commander.api.keyring import Keyring
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.credentials import api_keys
from incident_commander.credentials.api_keys import KeyIndex
from incident_commander.kept_objects import kept_identity
from tests.unit.api.keys import NOW, NS, client, index_secret, issue, keyring_with

RESPONDER = client("agent", "responder")


def test_issued_key_verifies_as_its_client() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER, client("dash", "viewer")])
    principal = keyring.verify_api_key(keys["dash"], NOW)
    assert principal == Principal(
        namespace=NS,
        policy="p",
        client="dash",
        role="viewer",
        key_id=principal.key_id,
        method="api-key",  # type: ignore[union-attr]
    )


def test_wrong_secret_unknown_id_and_malformed_keys_fail() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    key = keys["agent"]
    assert keyring.verify_api_key(key[:-1] + ("A" if key[-1] != "A" else "B"), NOW) == AuthFailure(
        reason="bad_api_key", detail="the API key is not valid"
    )
    assert isinstance(keyring.verify_api_key("ick_0000000000000000_xyz", NOW), AuthFailure)
    for bad in ("", "ick_", "abc_0123456789abcdef_x", "ick_short_x"):
        failure = keyring.verify_api_key(bad, NOW)
        assert isinstance(failure, AuthFailure) and failure.reason == "malformed_api_key"


def test_rotation_keeps_the_old_key_for_the_grace_period_only() -> None:
    keyring = Keyring()
    index, old = issue(KeyIndex(), RESPONDER)
    index, new = issue(index, RESPONDER, NOW + timedelta(minutes=1))
    keyring.secret_event("MODIFIED", index_secret("p", index))
    assert isinstance(keyring.verify_api_key(old, NOW + timedelta(minutes=30)), Principal)
    assert isinstance(keyring.verify_api_key(new, NOW + timedelta(minutes=30)), Principal)
    late = NOW + timedelta(minutes=1, hours=1, seconds=1)
    assert keyring.verify_api_key(old, late) == AuthFailure(
        reason="revoked_api_key", detail="the API key has been revoked"
    )
    assert isinstance(keyring.verify_api_key(new, late), Principal)


def test_revocation_and_deletion_follow_the_secret() -> None:
    keyring = Keyring()
    index, key = issue(KeyIndex(), RESPONDER)
    keyring.secret_event(None, index_secret("p", index))
    entry = index.for_client("agent", "Active")[0]
    keyring.secret_event("MODIFIED", index_secret("p", api_keys.with_revoked(index, [entry.key_id], NOW)))
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)
    keyring.secret_event("MODIFIED", index_secret("p", index))
    assert isinstance(keyring.verify_api_key(key, NOW), Principal)
    keyring.secret_event("DELETED", index_secret("p", index))
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)


def test_pending_keys_do_not_verify() -> None:
    keyring = Keyring()
    generated = api_keys.generate_key()
    keyring.secret_event(
        None, index_secret("p", api_keys.with_pending(KeyIndex(), RESPONDER, generated, NOW))
    )
    failure = keyring.verify_api_key(generated.plaintext, NOW)
    assert isinstance(failure, AuthFailure) and failure.reason == "inactive_api_key"


def test_an_unreadable_index_refuses_every_key_of_its_policy() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    broken = index_secret("p", KeyIndex())
    broken["data"]["index.json"] = "not base64!"
    keyring.secret_event("MODIFIED", broken)
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), AuthFailure)


def test_secrets_of_other_policies_do_not_interfere() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    other, _ = issue(KeyIndex(), RESPONDER)
    keyring.secret_event(None, index_secret("q", other))
    keyring.secret_event("DELETED", index_secret("q", other))
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), Principal)


def test_a_deletion_found_after_a_relist_revokes_keys_from_the_secrets_identity_alone() -> None:
    # relist.py keeps only kept_identity() of each Secret: no data, but enough for the keyring.
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), Principal)
    index = keyring.index((NS, "p"))
    assert index is not None
    keyring.secret_event("DELETED", kept_identity(index_secret("p", index)))
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), AuthFailure)
