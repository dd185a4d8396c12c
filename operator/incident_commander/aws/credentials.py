"""Credentials of a connection: static keys from a Secret, an assumed role, or the default chain.

Key material is held in objects whose repr hides it, and every error raised here
carries a reason and a message that name Secrets and keys, never their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from incident_commander.aws.spec import SecretRef
from incident_commander.kube_api import SecretData


class CredentialsError(Exception):
    """Credentials could not be resolved; ``reason`` becomes the CredentialsResolved reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class StaticKeys:
    """An access key pair (and optional session token); values never appear in repr."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def keys_from_secret(secret: SecretData | None, ref: SecretRef) -> StaticKeys:
    """The keys named by ``ref``; SecretNotFound or KeyMissing otherwise."""
    if secret is None:
        raise CredentialsError("SecretNotFound", f"Secret {ref.name} does not exist in this namespace")
    missing = [
        key
        for key in (ref.access_key_id_key, ref.secret_access_key_key)
        if not secret.data.get(key, b"").strip()
    ]
    if missing:
        raise CredentialsError(
            "KeyMissing", f"Secret {ref.name} has no non-empty value under {', '.join(missing)}"
        )
    token = secret.data.get(ref.session_token_key, b"").strip()
    try:
        return StaticKeys(
            access_key_id=secret.data[ref.access_key_id_key].strip().decode(),
            secret_access_key=secret.data[ref.secret_access_key_key].strip().decode(),
            session_token=token.decode() if token else None,
        )
    except UnicodeDecodeError:
        raise CredentialsError(
            "KeyInvalid", f"Secret {ref.name} holds keys that are not UTF-8 text"
        ) from None
