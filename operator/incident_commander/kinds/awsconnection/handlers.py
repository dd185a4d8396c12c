"""AwsConnection's watch subscriptions: its own objects, and the Secrets connections read.

Plain watch events (not kopf's change handlers): the controller compares generations itself, so
kopf stores no progress annotations and adds no finalizer to AwsConnections. A created or edited
Secret re-resolves the connections that name it within seconds.
"""

from __future__ import annotations

from incident_commander.kinds.awsconnection.controller import PLURAL, ConnectionController
from incident_commander.watches import SECRETS, Watches, custom


def subscribe(watches: Watches, connections: ConnectionController) -> None:
    watches.subscribe(custom(PLURAL), connections.watch_event)
    watches.track_deletions(custom(PLURAL))
    watches.subscribe(SECRETS, connections.secret_event)
