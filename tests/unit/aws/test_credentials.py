import pytest

from incident_commander.aws.credentials import CredentialsError, keys_from_secret
from incident_commander.aws.spec import SecretRef
from incident_commander.kube_api import SecretData

REF = SecretRef(name="keys")


def test_missing_secret() -> None:
    with pytest.raises(CredentialsError) as caught:
        keys_from_secret(None, REF)
    assert caught.value.reason == "SecretNotFound" and "keys" in caught.value.message


def test_missing_or_empty_key_is_named_without_values() -> None:
    secret = SecretData(
        resource_version="1", data={"AWS_ACCESS_KEY_ID": b"AKIAVALUE", "AWS_SECRET_ACCESS_KEY": b" "}
    )
    with pytest.raises(CredentialsError) as caught:
        keys_from_secret(secret, REF)
    assert caught.value.reason == "KeyMissing"
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.message and "AKIAVALUE" not in caught.value.message


def test_keys_with_optional_token_and_a_repr_that_hides_them() -> None:
    secret = SecretData(
        resource_version="1",
        data={
            "AWS_ACCESS_KEY_ID": b"AKIAVALUE\n",
            "AWS_SECRET_ACCESS_KEY": b"s3cr3t",
            "AWS_SESSION_TOKEN": b"tok",
        },
    )
    keys = keys_from_secret(secret, REF)
    assert (keys.access_key_id, keys.secret_access_key, keys.session_token) == ("AKIAVALUE", "s3cr3t", "tok")
    assert "s3cr3t" not in repr(keys) and "AKIAVALUE" not in repr(keys)
