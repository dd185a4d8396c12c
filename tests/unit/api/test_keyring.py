from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta

from incident_commander.api.keyring import Keyring
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.credentials import api_keys
from incident_commander.credentials.api_keys import KeyIndex
from incident_commander.credentials.integrity import IntegrityKey
from incident_commander.kept_objects import kept_identity
from tests.unit.api.keys import (
    INTEGRITY_KEY,
    NOW,
    NS,
    client,
    index_secret,
    issue,
    keyring_with,
    new_keyring,
    policy_uid,
    signing_secret,
)

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
    keyring = new_keyring()
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
    keyring = new_keyring()
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
    keyring = new_keyring()
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


# -- which Secrets count ---------------------------------------------------------------------------


def test_only_the_sealed_secret_under_the_derived_name_and_current_owner_counts() -> None:
    index, key = issue(KeyIndex(), RESPONDER)
    for planted in (
        index_secret("p", index, name="p-planted"),  # a name of the attacker's choosing
        index_secret("p", index, sealing_key=None),  # no seal
        index_secret("p", index, sealing_key=IntegrityKey(b"x" * 32)),  # someone else's key
        index_secret("p", index, owner_uid="uid-of-a-deleted-policy"),  # not the current policy
    ):
        keyring = new_keyring()
        keyring.secret_event(None, planted)
        assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)
    keyring = new_keyring()
    keyring.secret_event(None, index_secret("p", index))
    assert isinstance(keyring.verify_api_key(key, NOW), Principal)


def test_an_edited_field_breaks_the_seal() -> None:
    index, _ = issue(KeyIndex(), RESPONDER)
    body = index_secret("p", index)
    other, _ = issue(KeyIndex(), client("agent", "admin"))
    body["data"]["index.json"] = base64.b64encode(json.dumps(other.to_json()).encode()).decode()
    keyring = new_keyring()
    keyring.secret_event(None, body)
    assert keyring.index((NS, "p")) is None


def test_a_seal_is_bound_to_its_namespace() -> None:
    index, key = issue(KeyIndex(), RESPONDER)
    copied = index_secret("p", index)
    copied["metadata"]["namespace"] = "elsewhere"  # a copy into another namespace
    copied["metadata"]["ownerReferences"][0]["uid"] = policy_uid("elsewhere", "p")
    keyring = new_keyring()
    keyring.secret_event(None, copied)
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)


def test_untrusted_secrets_are_counted_by_reason() -> None:
    reasons: list[str] = []
    keyring = Keyring(integrity_key=lambda: INTEGRITY_KEY, policy_uid=policy_uid, on_untrusted=reasons.append)
    index, _ = issue(KeyIndex(), RESPONDER)
    keyring.secret_event(None, index_secret("p", index, name="p-planted"))
    keyring.secret_event(None, index_secret("p", index, sealing_key=None))
    unowned = index_secret("p", index)
    unowned["metadata"]["ownerReferences"] = []
    keyring.secret_event(None, unowned)
    assert reasons == ["unexpected_name", "bad_seal", "not_controlled_by_policy"]


def test_nothing_is_trusted_before_the_integrity_key_is_loaded() -> None:
    keyring = Keyring(integrity_key=lambda: None, policy_uid=policy_uid)
    index, key = issue(KeyIndex(), RESPONDER)
    keyring.secret_event(None, index_secret("p", index))
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)


def test_secrets_seen_before_their_policy_count_once_it_appears() -> None:
    known: dict[tuple[str, str], str] = {}
    keyring = Keyring(integrity_key=lambda: INTEGRITY_KEY, policy_uid=lambda ns, n: known.get((ns, n)))
    index, key = issue(KeyIndex(), RESPONDER)
    keyring.secret_event(None, index_secret("p", index))
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)
    known[(NS, "p")] = policy_uid(NS, "p")
    keyring.refresh(NS, "p")
    assert isinstance(keyring.verify_api_key(key, NOW), Principal)
    known[(NS, "p")] = "uid-of-a-new-policy-of-that-name"
    keyring.refresh(NS, "p")
    assert isinstance(keyring.verify_api_key(key, NOW), AuthFailure)


def test_a_key_id_held_by_another_policy_is_refused_and_its_removal_leaves_the_holder() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    held = keyring.index((NS, "p"))
    assert held is not None
    # Policy q (trusted) claims p's key id with a hash of its own.
    stolen = api_keys.generate_key()
    entry = held.entries[0]
    clash = KeyIndex(entries=(dataclasses.replace(entry, hash=stolen.hash),))
    keyring.secret_event(None, index_secret("q", clash))
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), Principal)
    keyring.secret_event("DELETED", index_secret("q", clash))
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), Principal)


def test_a_kid_is_looked_up_under_its_own_policy_only() -> None:
    keyring, _, key = keyring_with("p", [RESPONDER])
    keyring.secret_event(None, signing_secret("q", (key,)))  # q reuses p's kid
    assert keyring.verification_key((NS, "p"), key.kid, NOW) is not None
    keyring.secret_event("DELETED", signing_secret("q", (key,)))
    assert keyring.verification_key((NS, "p"), key.kid, NOW) is not None
    assert keyring.verification_key((NS, "q"), key.kid, NOW) is None


def test_a_stale_deletion_of_a_replaced_secret_changes_nothing() -> None:
    keyring, keys, _ = keyring_with("p", [RESPONDER])
    index = keyring.index((NS, "p"))
    assert index is not None
    old = index_secret("p", index)
    old["metadata"]["uid"] = "an-earlier-secret"
    keyring.secret_event("DELETED", old)
    assert isinstance(keyring.verify_api_key(keys["agent"], NOW), Principal)
