"""Stand-ins for the kinds' AWS seams, for unit tests of their decisions (no AWS, no emulator)."""

from __future__ import annotations

from dataclasses import dataclass, field

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.connection import ConnectionNotReady, ReadyConnection
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec


def ready_connection(namespace: str, name: str = "conn", account: str = "123456789012") -> ReadyConnection:
    """A Ready connection with real (unused) clients pointed at a closed loopback port."""
    spec = parse_connection_spec({"region": "us-east-1", "endpointUrl": "http://127.0.0.1:9"})
    clients = ConnectionClients.build(spec, StaticKeys("testing", "testing"), ClientCache())
    return ReadyConnection(namespace=namespace, name=name, account_id=account, clients=clients)


@dataclass
class FakeConnections:
    """aws/connection.ConnectionSource over a dict: a ReadyConnection or the reason it is not Ready."""

    known: dict[tuple[str, str], ReadyConnection | tuple[str, str]] = field(default_factory=dict)
    warming: bool = False
    first_probe: bool = False

    def ready(self, namespace: str, name: str = "conn") -> ReadyConnection:
        connection = ready_connection(namespace, name)
        self.known[(namespace, name)] = connection
        return connection

    def not_ready(self, namespace: str, name: str, reason: str, message: str) -> None:
        self.known[(namespace, name)] = (reason, message)

    def get(self, namespace: str, name: str) -> ReadyConnection:
        found = self.known.get((namespace, name))
        if found is None:
            raise ConnectionNotReady(namespace, name, "ConnectionNotFound", "no such AwsConnection")
        if isinstance(found, tuple):
            raise ConnectionNotReady(namespace, name, *found)
        return found

    def warming_up(self, namespace: str, name: str) -> bool:
        return self.warming

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        return self.first_probe
