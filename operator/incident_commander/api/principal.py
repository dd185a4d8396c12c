"""Who is calling: the authenticated client, its role and the policy it belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from incident_commander.credentials.api_keys import KeyEntry

Role = Literal["viewer", "responder", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "responder": 1, "admin": 2}
"""viewer < responder < admin: a route's minimum role admits every higher one."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller. Its scope is exactly one policy: ``(namespace, policy)``."""

    namespace: str
    policy: str
    client: str
    role: str
    key_id: str
    method: Literal["api-key", "jwt"]

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[minimum]

    def may_act_on(self, namespace: str, policy: str) -> bool:
        return self.namespace == namespace and self.policy == policy

    @property
    def rate_key(self) -> tuple[str, str, str]:
        return (self.namespace, self.policy, self.client)

    @classmethod
    def of_key(cls, policy: tuple[str, str], entry: KeyEntry, method: Literal["api-key", "jwt"]) -> Principal:
        """The client an API key of ``policy``'s index authenticates, directly or by a token."""
        return cls(
            namespace=policy[0],
            policy=policy[1],
            client=entry.client,
            role=entry.role,
            key_id=entry.key_id,
            method=method,
        )


@dataclass(frozen=True, kw_only=True)
class AuthFailure:
    """Why a credential was refused. ``reason`` is a bounded label (metrics, logs), never key material."""

    reason: str
    detail: str


PRINCIPAL = web.RequestKey("principal", Principal)
"""The authenticated caller, stored on the request for the middlewares (metrics, tracing)."""
