from __future__ import annotations

import dataclasses

import pytest

from incident_commander.credentials.integrity import IntegrityKey, SealedFields, generate_key

FIELDS = SealedFields(
    namespace="team",
    name="p-api-key-index",
    secret_type="incidentcommander.io/api-key-index",
    policy="p",
    policy_uid="uid-1",
    data={"index.json": '{"keys": []}'},
)


def test_a_seal_verifies_only_the_fields_it_was_made_for() -> None:
    key = IntegrityKey(generate_key())
    seal = key.seal(FIELDS)
    assert seal.startswith("v1:") and key.verify(FIELDS, seal)
    for change in (
        {"namespace": "other"},
        {"name": "p-jwt-signing-keys"},
        {"secret_type": "Opaque"},
        {"policy": "q"},
        {"policy_uid": "uid-2"},
        {"data": {"index.json": '{"keys": [1]}'}},
        {"data": {"index.json": '{"keys": []}', "extra": ""}},
    ):
        assert not key.verify(dataclasses.replace(FIELDS, **change), seal), change  # type: ignore[arg-type]


def test_another_key_or_no_seal_does_not_verify() -> None:
    key, other = IntegrityKey(generate_key()), IntegrityKey(generate_key())
    assert not other.verify(FIELDS, key.seal(FIELDS))
    assert not key.verify(FIELDS, None) and not key.verify(FIELDS, "") and not key.verify(FIELDS, "v1:00")


def test_the_key_never_shows_in_its_repr_and_must_be_long_enough() -> None:
    raw = generate_key()
    assert raw.hex() not in repr(IntegrityKey(raw)) and "redacted" in repr(IntegrityKey(raw))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        IntegrityKey(b"short")


def test_field_boundaries_cannot_be_shifted() -> None:
    key = IntegrityKey(generate_key())
    one = dataclasses.replace(FIELDS, namespace="ab", name="c")
    two = dataclasses.replace(FIELDS, namespace="a", name="bc")
    assert not key.verify(two, key.seal(one))
