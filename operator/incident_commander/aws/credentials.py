"""Credentials of a connection: the source identity (static keys from a Secret, a web identity
token file, or the default chain), then optionally a chain of assumed roles.

Key material is held in objects whose repr hides it, and every error raised here
carries a reason and a message that name Secrets and keys, never their values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from incident_commander.aws.spec import SecretRef
from incident_commander.kube_api import SecretData

MAX_WEB_IDENTITY_TOKEN = 20_000
"""STS accepts web identity tokens of up to 20,000 characters."""


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


def read_web_identity_token(path: str, allowed_dirs: Sequence[str]) -> str:
    """The OIDC token in ``path``, read anew at every (re)fetch: projected tokens rotate.

    The file must lie inside one of ``allowed_dirs`` (the operator's ``--web-identity-token-dir``),
    symlinks resolved. A token file is the operator pod's, not the connection's namespace's: without
    that check any AwsConnection could send any file the operator can read (its Kubernetes
    service-account token, say) to the STS endpoint its ``endpointUrl`` names. Errors name the
    path, never the content.
    """
    resolved = os.path.realpath(path)
    roots = [os.path.realpath(d) for d in allowed_dirs]
    if not any(os.path.commonpath([resolved, root]) == root for root in roots):
        allowed = ", ".join(allowed_dirs) if allowed_dirs else "none (set --web-identity-token-dir)"
        raise CredentialsError(
            "WebIdentityTokenNotAllowed",
            f"web identity token file {path} is outside the directories this operator allows: {allowed}",
        )
    try:
        with open(resolved, encoding="utf-8") as token_file:
            token = token_file.read(MAX_WEB_IDENTITY_TOKEN + 1).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialsError(
            "WebIdentityTokenUnreadable", f"web identity token file {path} cannot be read: {reason}"
        ) from None
    if not token or len(token) > MAX_WEB_IDENTITY_TOKEN:
        raise CredentialsError(
            "WebIdentityTokenUnreadable",
            f"web identity token file {path} is empty or longer than {MAX_WEB_IDENTITY_TOKEN} characters",
        )
    return token
