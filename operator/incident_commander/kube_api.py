"""The few Kubernetes API calls the operator makes outside kopf's own patching.

Uses the official client (blocking), so every call here is run off the event
loop by the async callers. Status is written with JSON merge patches to the
``status`` subresource, which never conflict and never touch the spec.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from incident_commander import API_GROUP, API_VERSION, __version__

logger = logging.getLogger(__name__)

COMPONENT = "incident-commander"


@dataclass(frozen=True, kw_only=True)
class ObjectRef:
    """Enough of an object to patch it and to point an Event at it."""

    kind: str
    plural: str
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, kw_only=True)
class SecretData:
    """A Secret's decoded data and its resourceVersion (to notice edits)."""

    resource_version: str
    data: Mapping[str, bytes]


def load_api_client(identity: str | None = None) -> client.ApiClient:
    """In-cluster service account first, then $KUBECONFIG / ~/.kube/config, like kopf's login.
    The replica's ``identity`` goes into the User-Agent, so the audit log tells replicas apart."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    api = client.ApiClient(configuration)
    api.user_agent = f"{COMPONENT}/{__version__}" + (f" ({identity})" if identity else "")
    return api


class Conflict(Exception):
    """A write lost an optimistic-concurrency race (HTTP 409); re-read and re-plan."""


class AlreadyExists(Conflict):
    """A create found the name taken: by a concurrent writer, or by a Secret that is not ours."""


class NotLeader(Exception):
    """A write refused before it was sent: this replica does not lead (docs/ha.md)."""


@dataclass(frozen=True, kw_only=True)
class StoredSecret:
    """A Secret the operator manages: its decoded data, labels, annotations, owner and version."""

    name: str
    resource_version: str
    labels: Mapping[str, str]
    data: Mapping[str, bytes]
    uid: str = ""
    type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    controller: tuple[str, str, str] | None = None
    """(kind, name, uid) of the Secret's controller ownerReference when that controller is one of
    our kinds; None when it has no such controller."""

    def controlled_by(self, owner: ObjectRef) -> bool:
        return self.controller == (owner.kind, owner.name, owner.uid)

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        return None if value is None else value.decode("utf-8", errors="replace")

    def texts(self) -> dict[str, str]:
        return {key: value.decode("utf-8", errors="replace") for key, value in self.data.items()}


LEASES = ("coordination.k8s.io", "v1", "leases")


class KubeApi:
    """Blocking adapter; callers on the event loop wrap calls in ``asyncio.to_thread``.

    ``writes_allowed`` fences every write to the objects the operator reconciles (status,
    finalizers, Secrets, Events): a replica that does not lead refuses them before they are sent
    (NotLeader). Leases are not fenced: electing a leader is how a replica comes to lead.
    """

    def __init__(
        self, api_client: client.ApiClient, *, writes_allowed: Callable[[], bool] = lambda: True
    ) -> None:
        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self.writes_allowed = writes_allowed

    def without_retries(self) -> KubeApi:
        """The same identity and server on a client of its own that makes one attempt per request
        (urllib3 otherwise repeats a GET or PUT that timed out up to three times): for leadership,
        whose loop retries every retry period, and whose request timeouts must add up to less than
        its renew deadline."""
        configuration = copy.copy(self._api_client.configuration)
        configuration.retries = 0
        api = client.ApiClient(configuration)
        api.user_agent = self._api_client.user_agent
        return KubeApi(api, writes_allowed=self.writes_allowed)

    def ping(self) -> None:
        """One cheap request (the apiserver's version, readable by anyone): raises when it does
        not answer within a few seconds."""
        client.VersionApi(self._api_client).get_code(_request_timeout=(2, 4))

    def _fence(self, what: str) -> None:
        if not self.writes_allowed():
            raise NotLeader(f"not the leader: {what} refused")

    def list_secret_bodies(
        self, namespaces: Sequence[str] | None, label_selector: str
    ) -> list[dict[str, Any]]:
        """Secrets as plain JSON bodies (the shape watch events carry); all namespaces when None."""
        if namespaces is None:
            items = self._core.list_secret_for_all_namespaces(label_selector=label_selector).items
        else:
            items = [
                item
                for namespace in namespaces
                for item in self._core.list_namespaced_secret(namespace, label_selector=label_selector).items
            ]
        serialize = self._api_client.sanitize_for_serialization
        return [dict(serialize(item)) for item in items]  # type: ignore[no-untyped-call]

    def list_custom_bodies(self, plural: str, namespaces: Sequence[str] | None) -> list[dict[str, Any]]:
        """Objects of one of our kinds as JSON bodies; all namespaces when None."""
        if namespaces is None:
            found = cast(
                dict[str, Any], self._custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural)
            )
            return list(found.get("items") or [])
        bodies: list[dict[str, Any]] = []
        for namespace in namespaces:
            page = cast(
                dict[str, Any],
                self._custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural),
            )
            bodies.extend(page.get("items") or [])
        return bodies

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        """The Secret's data, or None when it does not exist."""
        secret = self.read_managed_secret(namespace, name)
        return (
            None if secret is None else SecretData(resource_version=secret.resource_version, data=secret.data)
        )

    def read_managed_secret(self, namespace: str, name: str) -> StoredSecret | None:
        """The Secret with its labels, annotations and controller, or None when it does not exist."""
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _stored(secret)

    def list_managed_secrets(self, namespace: str, label_selector: str) -> list[StoredSecret]:
        found = self._core.list_namespaced_secret(namespace, label_selector=label_selector)
        return [_stored(item) for item in found.items]

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
        """Create (``resource_version`` None) or replace a Secret owned by ``owner``; return the new
        resourceVersion. Raises Conflict when someone else wrote it in between, AlreadyExists when a
        create finds the name taken."""
        self._fence(f"writing Secret {namespace}/{name}")
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels=dict(labels),
                annotations=dict(annotations) if annotations else None,
                resource_version=resource_version,
                owner_references=[
                    client.V1OwnerReference(
                        api_version=f"{API_GROUP}/{API_VERSION}",
                        kind=owner.kind,
                        name=owner.name,
                        uid=owner.uid,
                        controller=True,
                        block_owner_deletion=False,
                    )
                ],
            ),
            type=type_,
            string_data=dict(data),
        )
        try:
            if resource_version is None:
                stored = self._core.create_namespaced_secret(namespace, body)
            else:
                stored = self._core.replace_namespaced_secret(name, namespace, body)
        except ApiException as exc:
            if exc.status == 409 and resource_version is None:
                raise AlreadyExists(f"Secret {namespace}/{name} already exists") from None
            if exc.status == 409:
                raise Conflict(f"Secret {namespace}/{name} changed concurrently") from None
            raise
        return str(stored.metadata.resource_version if stored.metadata else "")

    def read_or_create_secret_field(self, namespace: str, name: str, field_name: str, value: bytes) -> bytes:
        """One field of a Secret, creating the Secret with ``value`` when it does not exist yet.

        Racing creators (replicas starting together) all end up with the value of whichever create
        won: a create that finds the name taken reads the stored Secret instead."""
        for _ in range(3):
            try:
                secret = self._core.read_namespaced_secret(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            else:
                stored = (secret.data or {}).get(field_name)
                if stored is None:
                    raise ValueError(f"Secret {namespace}/{name} has no field {field_name}")
                return base64.b64decode(stored)
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=name,
                    namespace=namespace,
                    labels={"app.kubernetes.io/managed-by": COMPONENT},
                ),
                type="Opaque",
                data={field_name: base64.b64encode(value).decode()},
                immutable=True,
            )
            try:
                self._core.create_namespaced_secret(namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                continue
            return value
        raise Conflict(f"Secret {namespace}/{name} could not be read or created")

    def delete_secret(self, namespace: str, name: str) -> None:
        self._fence(f"deleting Secret {namespace}/{name}")
        try:
            self._core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_finalizers(self, ref: ObjectRef, finalizers: list[str]) -> None:
        """Set ``metadata.finalizers`` (merge patch replaces the list)."""
        self._fence(f"patching finalizers of {ref.namespace}/{ref.name}")
        try:
            self._custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                ref.namespace,
                ref.plural,
                ref.name,
                {"metadata": {"finalizers": finalizers}},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, ref: ObjectRef, status_patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch ``status`` and return the stored status; None if the object is gone."""
        self._fence(f"patching the status of {ref.namespace}/{ref.name}")
        try:
            obj = self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, ref.namespace, ref.plural, ref.name, {"status": dict(status_patch)}
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict((obj or {}).get("status") or {}) if isinstance(obj, dict) else {}

    def post_event(self, ref: ObjectRef, *, type_: str, reason: str, message: str, now: datetime) -> None:
        """A core/v1 Event, as kubectl describe shows them. Failures are logged, never raised.

        Sent as a plain JSON body, and the created Event is not read back into a model: the
        client's CoreV1Event (pydantic checks on the way in, a model built from the reply on the
        way out) cost 1.2 ms of CPU per Event against 0.8 ms for the same POST this way, and the
        operator posts one or two Events per object it converges (docs/performance.md)."""
        if not self.writes_allowed():
            return
        stamp = now.isoformat()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            status = self._send_json(
                "POST", "/api/v1/namespaces/{namespace}/events", {"namespace": ref.namespace}, event
            )
        except ApiException as exc:
            status = exc.status
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # the apiserver away, after retries
            logger.warning(
                "could not post event %s for %s/%s: %s", reason, ref.namespace, ref.name, type(exc).__name__
            )
            return
        if status != 201:
            logger.warning(
                "could not post event %s for %s/%s: HTTP %s", reason, ref.namespace, ref.name, status
            )

    def _send_json(
        self, method: str, path: str, path_params: Mapping[str, str], body: Mapping[str, Any]
    ) -> int:
        """One request with a JSON body, through the client's own connection pool, TLS and
        credentials; the reply's body is read and dropped. Returns the HTTP status."""
        request = self._api_client.param_serialize(
            method=method,
            resource_path=path,
            path_params=dict(path_params),
            body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api_client.call_api(*request)
        response.read()  # type: ignore[no-untyped-call]
        return int(response.status)

    # -- Leases (leader election and membership; not fenced) --------------------------------------
    # ``timeout`` (seconds, for connecting and for the answer each): leadership must notice an
    # apiserver that stopped answering within its renew deadline, so its requests may not wait for
    # TCP to give up (minutes, when a partition drops packets).
    def get_lease(self, namespace: str, name: str, *, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            found = self._custom.get_namespaced_custom_object(
                *LEASES[:2], namespace, LEASES[2], name, **_timeout(timeout)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cast(dict[str, Any], found))

    def create_lease(
        self, namespace: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Raises AlreadyExists when another replica created it first."""
        try:
            created = self._custom.create_namespaced_custom_object(
                *LEASES[:2], namespace, LEASES[2], dict(body), **_timeout(timeout)
            )
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(f"Lease {namespace}/{body['metadata']['name']} exists") from None
            raise
        return dict(cast(dict[str, Any], created))

    def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Raises Conflict when the Lease changed since ``body``'s resourceVersion was read."""
        try:
            replaced = self._custom.replace_namespaced_custom_object(
                *LEASES[:2], namespace, LEASES[2], name, dict(body), **_timeout(timeout)
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"Lease {namespace}/{name} changed concurrently") from None
            raise
        return dict(cast(dict[str, Any], replaced))

    def delete_lease(self, namespace: str, name: str, *, timeout: float | None = None) -> None:
        try:
            self._custom.delete_namespaced_custom_object(
                *LEASES[:2], namespace, LEASES[2], name, **_timeout(timeout)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list_leases(
        self, namespace: str, label_selector: str, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        found = self._custom.list_namespaced_custom_object(
            *LEASES[:2], namespace, LEASES[2], label_selector=label_selector, **_timeout(timeout)
        )
        return list(cast(dict[str, Any], found).get("items") or [])


def _timeout(seconds: float | None) -> dict[str, Any]:
    return {} if seconds is None else {"_request_timeout": (seconds, seconds)}


def _stored(secret: Any) -> StoredSecret:
    meta = secret.metadata
    controller = next(
        (
            ref
            for ref in meta.owner_references or ()
            if ref.controller and ref.api_version == f"{API_GROUP}/{API_VERSION}"
        ),
        None,
    )
    return StoredSecret(
        name=str(meta.name),
        resource_version=str(meta.resource_version),
        labels=dict(meta.labels or {}),
        data={key: base64.b64decode(value) for key, value in (secret.data or {}).items()},
        uid=str(meta.uid or ""),
        type=str(secret.type or ""),
        annotations=dict(meta.annotations or {}),
        controller=(str(controller.kind), str(controller.name), str(controller.uid)) if controller else None,
    )
