import os
from pathlib import Path

import pytest

from incident_commander.aws.credentials import CredentialsError, keys_from_secret, read_web_identity_token
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


def test_web_identity_token_is_read_from_an_allowed_directory(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("eyJ.token.sig\n")
    assert read_web_identity_token(str(tmp_path / "token"), [str(tmp_path)]) == "eyJ.token.sig"


@pytest.mark.parametrize("allowed", [[], ["/var/run/secrets/eks.amazonaws.com/serviceaccount"]])
def test_a_token_file_outside_the_allowed_directories_is_refused_unread(
    tmp_path: Path, allowed: list[str]
) -> None:
    (tmp_path / "token").write_text("do-not-send")
    with pytest.raises(CredentialsError) as caught:
        read_web_identity_token(str(tmp_path / "token"), allowed)
    assert caught.value.reason == "WebIdentityTokenNotAllowed"
    assert "do-not-send" not in caught.value.message and str(tmp_path / "token") in caught.value.message


def test_symlinks_and_dot_dot_cannot_leave_the_allowed_directory(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "tokens", tmp_path / "secret"
    allowed.mkdir()
    outside.write_text("kubernetes-service-account-token")
    os.symlink(outside, allowed / "link")
    (tmp_path / "tokens-evil").mkdir()
    (tmp_path / "tokens-evil" / "t").write_text("x")
    for path in (allowed / "link", allowed / ".." / "secret", tmp_path / "tokens-evil" / "t"):
        with pytest.raises(CredentialsError) as caught:
            read_web_identity_token(str(path), [str(allowed)])
        assert caught.value.reason == "WebIdentityTokenNotAllowed", path


def test_missing_or_empty_token_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("  \n")
    for name in ("missing", "empty"):
        with pytest.raises(CredentialsError) as caught:
            read_web_identity_token(str(tmp_path / name), [str(tmp_path)])
        assert caught.value.reason == "WebIdentityTokenUnreadable", name
