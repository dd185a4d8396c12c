"""How other kinds use an AwsConnection: a Ready connection's clients, or why there is none.

The AwsConnection controller (kinds/awsconnection) implements ``ConnectionSource``; the kinds that
use connections depend only on this protocol, so each can be tested with a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from incident_commander.aws.clients import ConnectionClients


class ConnectionNotReady(Exception):
    """The connection is missing or not Ready; ``reason`` is meant for the caller's condition."""

    def __init__(self, namespace: str, name: str, reason: str, message: str) -> None:
        super().__init__(f"AwsConnection {namespace}/{name} is not ready ({reason}): {message}")
        self.namespace = namespace
        self.name = name
        self.reason = reason
        self.message = message

    def describe(self) -> str:
        """One line for a user's condition message."""
        return f"AwsConnection {self.name} is not ready ({self.reason}): {self.message}"


@dataclass(frozen=True, kw_only=True)
class ReadyConnection:
    """A Ready connection's identity and clients. Client calls block: run them off the loop."""

    namespace: str
    name: str
    account_id: str | None
    clients: ConnectionClients

    def client(self, service: str) -> Any:
        return self.clients.client(service)

    @property
    def region(self) -> str:
        return self.clients.spec.region


class ConnectionSource(Protocol):
    def get(self, namespace: str, name: str) -> ReadyConnection:
        """The connection, or ConnectionNotReady."""
        ...

    def warming_up(self, namespace: str, name: str) -> bool:
        """True while this process cannot know yet what the connection's stored status says."""
        ...

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        """True while a new connection's first probe round runs (users may wait for it)."""
        ...
