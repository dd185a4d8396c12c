"""The API's view of the cluster follows the operator's watches (watches.py): the directory hears
of every object of the three kinds, the keyring of every Secret (it trusts only its own)."""

from __future__ import annotations

import functools

from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.kinds.awsconnection import controller as awsconnection
from incident_commander.kinds.budgetpolicy import controller as budgetpolicy
from incident_commander.kinds.incidentpolicy import controller as incidentpolicy
from incident_commander.watches import SECRETS, Watches, custom


def subscribe(watches: Watches, *, directory: Directory, keyring: Keyring) -> None:
    for kind in (awsconnection, budgetpolicy, incidentpolicy):
        watches.subscribe(custom(kind.PLURAL), functools.partial(directory.observe, kind.KIND))
    watches.subscribe(SECRETS, keyring.secret_event)
