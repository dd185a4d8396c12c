"""An in-memory stand-in for ``kube_api.KubeApi``, for unit tests of the controllers' decisions.

It keeps what the operator writes (status by JSON merge patch, Events, finalizers, Secrets with
resourceVersions, conflicts and AlreadyExists like the apiserver's) and counts every write, so a
test can say "this pass wrote nothing". Integration tests use the real apiserver instead.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from incident_commander.kube_api import AlreadyExists, Conflict, ObjectRef, SecretData, StoredSecret


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: maps merge, None removes, everything else replaces."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@dataclass
class Event:
    ref: ObjectRef
    type: str
    reason: str
    message: str


@dataclass
class FakeKube:
    statuses: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    finalizers: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    secrets: dict[tuple[str, str], StoredSecret] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    """One line per write, in order: ``patch_status incidentpolicies ns/name`` and so on."""
    gone: set[tuple[str, str, str]] = field(default_factory=set)
    """Objects deleted meanwhile: their status patches answer None, as a 404 would."""
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reachable: bool = True
    """False: every call raises, as when the apiserver is away."""
    secret_reads: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, name) of every ``read_secret``, in order."""
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- status, finalizers, Events ----------------------------------------------------------------
    def patch_status(self, ref: ObjectRef, status_patch: Mapping[str, Any]) -> dict[str, Any] | None:
        key = (ref.plural, ref.namespace, ref.name)
        self.writes.append(f"patch_status {ref.plural} {ref.namespace}/{ref.name}")
        if key in self.gone:
            return None
        self.statuses[key] = merge_patch(self.statuses.get(key, {}), status_patch)
        return copy.deepcopy(self.statuses[key])

    def patch_finalizers(self, ref: ObjectRef, finalizers: list[str]) -> None:
        self.writes.append(f"patch_finalizers {ref.plural} {ref.namespace}/{ref.name}")
        self.finalizers[(ref.plural, ref.namespace, ref.name)] = list(finalizers)

    def post_event(self, ref: ObjectRef, *, type_: str, reason: str, message: str, now: datetime) -> None:
        self.events.append(Event(ref=ref, type=type_, reason=reason, message=message))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    # -- Secrets -----------------------------------------------------------------------------------
    def put_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        type_: str = "Opaque",
        labels: Mapping[str, str] | None = None,
        owner: ObjectRef | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> StoredSecret:
        """A Secret written by someone (a user, an attacker, another controller), not the operator."""
        stored = StoredSecret(
            name=name,
            resource_version=str(next(self._versions)),
            labels=dict(labels or {}),
            data={k: v.encode() for k, v in data.items()},
            uid=f"uid-secret-{name}-{next(self._versions)}",
            type=type_,
            annotations=dict(annotations or {}),
            controller=(owner.kind, owner.name, owner.uid) if owner else None,
        )
        self.secrets[(namespace, name)] = stored
        return stored

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        self.secret_reads.append((namespace, name))
        stored = self.secrets.get((namespace, name))
        return (
            None if stored is None else SecretData(resource_version=stored.resource_version, data=stored.data)
        )

    def read_managed_secret(self, namespace: str, name: str) -> StoredSecret | None:
        return self.secrets.get((namespace, name))

    def list_managed_secrets(self, namespace: str, label_selector: str) -> list[StoredSecret]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [
            s
            for (ns, _), s in sorted(self.secrets.items())
            if ns == namespace and all(s.labels.get(k) == v for k, v in wanted.items())
        ]

    def write_secret(
        self,
        namespace: str,
        *,
        name: str,
        type_: str,
        labels: Mapping[str, str],
        data: Mapping[str, str],
        owner: ObjectRef,
        resource_version: str | None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        self.writes.append(f"write_secret {namespace}/{name}")
        existing = self.secrets.get((namespace, name))
        if resource_version is None and existing is not None:
            raise AlreadyExists(f"Secret {namespace}/{name} already exists")
        if resource_version is not None and (
            existing is None or existing.resource_version != resource_version
        ):
            raise Conflict(f"Secret {namespace}/{name} changed concurrently")
        version = str(next(self._versions))
        self.secrets[(namespace, name)] = StoredSecret(
            name=name,
            resource_version=version,
            labels=dict(labels),
            data={k: v.encode() for k, v in data.items()},
            uid=existing.uid if existing else f"uid-secret-{name}-{version}",
            type=type_,
            annotations=dict(annotations or {}),
            controller=(owner.kind, owner.name, owner.uid),
        )
        return version

    def delete_secret(self, namespace: str, name: str) -> None:
        self.writes.append(f"delete_secret {namespace}/{name}")
        self.secrets.pop((namespace, name), None)

    def secret_body(self, namespace: str, name: str) -> dict[str, Any]:
        """The Secret as a watch event would carry it (for the keyring)."""
        stored = self.secrets[(namespace, name)]
        meta: dict[str, Any] = {
            "namespace": namespace,
            "name": name,
            "uid": stored.uid,
            "labels": dict(stored.labels),
            "annotations": dict(stored.annotations),
        }
        if stored.controller is not None:
            kind, owner, uid = stored.controller
            meta["ownerReferences"] = [
                {
                    "apiVersion": "incidentcommander.io/v1alpha1",
                    "kind": kind,
                    "name": owner,
                    "uid": uid,
                    "controller": True,
                }
            ]
        return {
            "metadata": meta,
            "type": stored.type,
            "data": {k: base64.b64encode(v).decode() for k, v in stored.data.items()},
        }

    # -- Leases --------------------------------------------------------------------------------------
    def _reach(self) -> None:
        if not self.reachable:
            raise ConnectionError("the apiserver is away")

    def get_lease(self, namespace: str, name: str, *, timeout: float | None = None) -> dict[str, Any] | None:
        self._reach()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_lease(
        self, namespace: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        self._reach()
        name = body["metadata"]["name"]
        if (namespace, name) in self.leases:
            raise AlreadyExists(f"Lease {namespace}/{name} exists")
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[(namespace, name)] = stored
        self.writes.append(f"create_lease {namespace}/{name}")
        return copy.deepcopy(stored)

    def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        self._reach()
        existing = self.leases.get((namespace, name))
        if existing is None or existing["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            raise Conflict(f"Lease {namespace}/{name} changed concurrently")
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[(namespace, name)] = stored
        self.writes.append(f"replace_lease {namespace}/{name}")
        return copy.deepcopy(stored)

    def delete_lease(self, namespace: str, name: str, *, timeout: float | None = None) -> None:
        self._reach()
        self.leases.pop((namespace, name), None)

    def list_leases(
        self, namespace: str, label_selector: str, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        self._reach()
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(lease)
            for (ns, _), lease in sorted(self.leases.items())
            if ns == namespace and (lease["metadata"].get("labels") or {}).get(key) == value
        ]
